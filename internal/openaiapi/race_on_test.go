//go:build race

package openaiapi_test

// raceEnabled: OpenAI's document loads in minutes under the race detector.
const raceEnabled = true
