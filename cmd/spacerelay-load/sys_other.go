//go:build !unix

package main

import "errors"

func raiseFileLimit() (int, error) { return 0, errors.New("no file limit to raise") }

func selfCPU() float64 { return 0 }
