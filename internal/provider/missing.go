package provider

import (
	"context"
)

// Missing stands in for a capability no provider is configured for: every
// call fails at once, permanently, with a message that says what to set.
type Missing struct {
	Capability string // "speech_to_text"
	Hint       string // what to configure
}

var _ STT = Missing{}

// Name implements the capability interfaces.
func (m Missing) Name() string { return "none" }

func (m Missing) err() error {
	return &Error{Provider: "none", Kind: KindNotConfigured, Message: "no provider is configured for " + m.Capability + ": " + m.Hint}
}

// Transcribe implements STT.
func (m Missing) Transcribe(context.Context, TranscribeRequest) (Transcript, error) {
	return Transcript{}, m.err()
}
