package task

import "testing"

func TestEstimatesCountInputAndMaxTokens(t *testing.T) {
	max := 100
	for name, c := range map[string]struct {
		got, want int64
	}{
		"text":         {GenerateTextInput{Prompt: "12345678", System: "1234", MaxTokens: &max}.EstimatedTokens(), 3 + 100},
		"text, no max": {GenerateTextInput{Prompt: "1234"}.EstimatedTokens(), 1 + UnknownOutputTokens},
		"image":        {DescribeImageInput{Prompt: "12345678", MaxTokens: &max}.EstimatedTokens(), 2 + 100 + ImageTokens},
		"embeddings":   {EmbedInput{Input: []string{"12345678", "1234"}}.EstimatedTokens(), 3 + 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", name, c.got, c.want)
		}
	}
}
