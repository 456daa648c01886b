package task

// Route says what served a call made through a routing file: the
// deployment, every call tried on the way (the failed ones first), and the
// prices of the one that served. The router returns it with the response,
// so callers read it from what the call returned, not from a context.
type Route struct {
	Deployment string // "chat/2"
	Provider   string
	Model      string
	Calls      []Call // Attempt is left 0: the caller knows the attempt
	Price      Price
}

// Price is what a deployment costs, in US dollars, as the routing file
// gives it.
type Price struct {
	InputPerMillionTokens  float64 `yaml:"input_per_million_tokens"`
	OutputPerMillionTokens float64 `yaml:"output_per_million_tokens"`
	PerMillionCharacters   float64 `yaml:"per_million_characters"`
	PerAudioMinute         float64 `yaml:"per_audio_minute"`
}

// Set reports whether any price is given.
func (p Price) Set() bool { return p != Price{} }

// Cost prices what a call consumed; false without prices.
func (p Price) Cost(m Metered) (float64, bool) {
	if !p.Set() {
		return 0, false
	}
	return float64(m.InputTokens)*p.InputPerMillionTokens/1e6 +
		float64(m.OutputTokens)*p.OutputPerMillionTokens/1e6 +
		float64(m.Characters)*p.PerMillionCharacters/1e6 +
		m.AudioSeconds/60*p.PerAudioMinute, true
}

// RouteOf is the route of a result served through a routing file; nil
// otherwise.
func (r TextResult) RouteOf() *Route { return r.Route }

// RouteOf is as TextResult's.
func (r EmbedResult) RouteOf() *Route { return r.Route }

// RouteOf is as TextResult's.
func (r AudioResult) RouteOf() *Route { return r.Route }

// RouteOf is as TextResult's.
func (r TranscriptResult) RouteOf() *Route { return r.Route }
