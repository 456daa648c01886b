//go:build !race

package openaiapi_test

const raceEnabled = false
