package session

// HoldStall is holdStall, for the tests of package session_test.
const HoldStall = holdStall
