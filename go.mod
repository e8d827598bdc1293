module github.com/spacerelay/spacerelay

go 1.26.4

require (
	github.com/google/uuid v1.6.0
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.25.0
)
