package task

// UnknownOutputTokens is what a call that sets no max_tokens is estimated
// to produce; the provider's reported usage corrects it.
const UnknownOutputTokens = 256

// ImageTokens is what one image is estimated to cost in input tokens.
const ImageTokens = 1000

// EstimatedTokens is what a call is estimated to use before it runs, for
// flow control's tokens budget and the reservation against a key's daily
// budget: a token for every four characters of input, and its max_tokens.
func EstimatedTokens(inputChars, maxTokens int) int64 {
	if maxTokens <= 0 {
		maxTokens = UnknownOutputTokens
	}
	return int64(inputChars/4 + maxTokens)
}

// EstimatedTokens is the text generation's estimate.
func (in GenerateTextInput) EstimatedTokens() int64 {
	return EstimatedTokens(in.inputChars(), deref(in.MaxTokens)) + int64(in.images())*ImageTokens
}

// EstimatedTokens is the question's and the image's estimate.
func (in DescribeImageInput) EstimatedTokens() int64 {
	return EstimatedTokens(len(in.PromptOrDefault()), deref(in.MaxTokens)) + ImageTokens
}

// EstimatedTokens is the embedding's estimate: its input only.
func (in EmbedInput) EstimatedTokens() int64 { return EstimatedInputTokens(in.Input) }

// EstimatedInputTokens is what texts that produce no output (embeddings)
// are estimated to use.
func EstimatedInputTokens(texts []string) int64 {
	chars := 0
	for _, s := range texts {
		chars += len(s)
	}
	return int64(chars/4 + 1)
}

func deref(n *int) int {
	if n == nil {
		return 0
	}
	return *n
}
