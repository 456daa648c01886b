// Package architecture holds no code: its test reads the imports of every
// package and fails, naming the rule, when a change breaks one of the layer
// rules the README's architecture section states. The rules are listed once,
// in architecture_test.go.
package architecture
