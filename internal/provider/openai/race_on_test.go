//go:build race

package openai_test

// raceEnabled: loading OpenAI's 3 MB document takes minutes under the race
// detector, so request validation runs only in builds without it (.ci/run
// runs this package both ways).
const raceEnabled = true
