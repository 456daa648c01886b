package task

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Pipeline bounds.
const (
	// MaxPipelineSteps bounds the steps of one pipeline.
	MaxPipelineSteps = 16
	// MaxFanOut bounds the items a for_each step runs over.
	MaxFanOut = 1000
)

// PipelineInput is a pipeline's submit: ordered steps, each an ordinary
// task of an existing kind. The options apply to every step's task (a
// step's own input may override them), except webhook, which receives the
// pipeline's own end.
type PipelineInput struct {
	Options
	Steps []PipelineStep `json:"steps" minItems:"1" maxItems:"16" doc:"The steps, in the order they run; each starts once the one before it has succeeded."`
}

// PipelineStep is one step of a pipeline.
type PipelineStep struct {
	Name string `json:"name,omitempty" maxLength:"40" doc:"What later steps call this step in references ({{steps.NAME.OUTPUT}}); its position (0, 1, …) when empty." example:"transcript"`
	Kind Type   `json:"kind" enum:"generate_text,describe_image,embed,text_to_speech,speech_to_text" doc:"The kind of task the step runs."`
	// Input is the kind's body. Any string in it may hold references to
	// earlier steps' outputs: {{steps.NAME.OUTPUT}}, and {{item}} and
	// {{index}} in a for_each step.
	Input json.RawMessage `json:"input" doc:"The body the kind's own submit takes (POST /background/KIND), whose strings may hold {{steps.NAME.OUTPUT}}, and {{item}} and {{index}} in a for_each step. speech_to_text takes file_id (a file uploaded to /v1/files) or audio (an artifact URL, such as {{steps.NAME.audio}}) instead of an upload."`
	// ForEach makes the step run once per item: a list of strings, or one
	// reference to a list output.
	ForEach json.RawMessage `json:"for_each,omitempty" doc:"Run the step once per item: a list of strings, or one reference to a list output (\"{{steps.NAME.paragraphs}}\"). The step's outputs are then lists, in the items' order."`
}

// PipelineRecord is what a client sees of a pipeline.
type PipelineRecord struct {
	ID          string               `json:"pipeline_id" doc:"Unguessable pipeline id (UUIDv4)."`
	Status      Status               `json:"status" enum:"PENDING,STARTED,SUCCESS,FAILURE,REVOKED" doc:"The same words as a task's: SUCCESS once its last step has succeeded; FAILURE or REVOKED as soon as a step ends so."`
	Owner       string               `json:"owner,omitempty"`
	Steps       []PipelineStepRecord `json:"steps"`
	Metadata    map[string]string    `json:"metadata,omitempty"`
	Webhook     *WebhookInfo         `json:"webhook,omitempty" doc:"Where the pipeline's end is posted (the URL's query is not shown)."`
	CreatedAt   time.Time            `json:"created_at"`
	CompletedAt *time.Time           `json:"completed_at,omitempty"`
	DeadlineAt  *time.Time           `json:"deadline_at,omitempty" doc:"Past it, the running step is cut and the pipeline ends REVOKED (deadline_exceeded)."`
	ExpiresAt   *time.Time           `json:"expires_at,omitempty"`
	Result      json.RawMessage      `json:"result,omitempty" doc:"On SUCCESS: the last step's result, or the list of its results for a for_each step. Not in listings."`
	Error       *PipelineFailure     `json:"error,omitempty" doc:"Why the pipeline failed or was revoked, naming the step."`
	// WebhookURL is the whole, sealed webhook URL: never shown.
	WebhookURL string `json:"-"`
}

// PipelineStepRecord is one step as the pipeline's record shows it.
type PipelineStepRecord struct {
	Name string `json:"name"`
	Kind Type   `json:"kind"`
	// Status is PENDING until the step starts, then its task's (a for_each
	// step's: STARTED until all its tasks have ended).
	Status  Status   `json:"status" enum:"PENDING,STARTED,SUCCESS,FAILURE,REVOKED"`
	Skipped bool     `json:"skipped,omitempty" doc:"true for a step that never ran because one before it failed or the pipeline was revoked."`
	TaskID  string   `json:"task_id,omitempty" doc:"The step's task, once it is submitted: an ordinary task, read at /background/tasks/{task_id}."`
	TaskIDs []string `json:"task_ids,omitempty" doc:"A for_each step's tasks, one per item, in order."`
}

// PipelineFailure says why a pipeline did not succeed.
type PipelineFailure struct {
	Code    FailureCode `json:"code" example:"provider_rejected"`
	Message string      `json:"message"`
	Step    string      `json:"step,omitempty" doc:"The step that failed, by name."`
	TaskID  string      `json:"task_id,omitempty" doc:"The step's task that failed."`
}

// PipelineOutputs are the outputs each kind's step gives to later steps:
// each is text or a list of texts.
var PipelineOutputs = map[Type]map[string]ValueShape{
	TypeGenerateText:  {"text": Text, "paragraphs": List},
	TypeDescribeImage: {"text": Text, "paragraphs": List},
	TypeSpeechToText:  {"text": Text, "paragraphs": List, "segments": List, "language": Text},
	TypeTextToSpeech:  {"audio": Text},
	TypeEmbed:         {},
}

// ValueShape is what a reference stands for: a text or a list of texts.
type ValueShape int

// The shapes of values.
const (
	Text ValueShape = iota
	List
)

// Value is what a reference stands for once its step has run.
type Value struct {
	Shape ValueShape
	Text  string
	List  []string
}

// reference matches one {{…}} in a string.
var reference = regexp.MustCompile(`\{\{\s*([^{}]*?)\s*\}\}`)

// stepName is what a step may be called.
var stepName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]{0,39}$`)

// Ref is one parsed reference: to a step's output, or to the item or index
// of a for_each step.
type Ref struct {
	Step   int    // the step referred to; -1 for item and index
	Output string // the output's name, or "item" or "index"
	// Index is, when the step runs, the position of the item it runs for.
	Index int
}

// StepName is step i's name: its own, or its position.
func (in PipelineInput) StepName(i int) string {
	if n := in.Steps[i].Name; n != "" {
		return n
	}
	return strconv.Itoa(i)
}

// ShapeOf is the shape output of step i gives, seen from later steps: a
// for_each step's every output is a list.
func (in PipelineInput) ShapeOf(i int, output string) (ValueShape, bool) {
	shape, ok := PipelineOutputs[in.Steps[i].Kind][output]
	if !ok {
		return 0, false
	}
	if len(in.Steps[i].ForEach) > 0 {
		return List, true
	}
	return shape, true
}

// Check checks a pipeline's structure: its kinds, names, references (to
// earlier steps, and to outputs they give) and for_each lists, naming the
// step and field at fault. It does not check each step's input against its
// kind: the service does, with the kind's own rules.
func (in PipelineInput) Check() error {
	if err := in.Options.Validate(); err != nil {
		return err
	}
	if len(in.Steps) == 0 || len(in.Steps) > MaxPipelineSteps {
		return Invalid("steps", fmt.Sprintf("a pipeline has 1 to %d steps", MaxPipelineSteps))
	}
	names := map[string]int{}
	for i, st := range in.Steps {
		at := fmt.Sprintf("steps[%d]", i)
		if !slices.Contains(Types, st.Kind) {
			return Invalid(at+".kind", fmt.Sprintf("unknown kind %q; the kinds are %s", st.Kind, typeList()))
		}
		name := in.StepName(i)
		if st.Name != "" && !stepName.MatchString(st.Name) {
			return Invalid(at+".name", "a step's name is 1 to 40 letters, digits, _ or -, starting with a letter or _")
		}
		if j, dup := names[name]; dup {
			return Invalid(at+".name", fmt.Sprintf("step %d is also called %q", j, name))
		}
		names[name] = i
		if len(st.Input) == 0 || st.Input[0] != '{' {
			return Invalid(at+".input", "input is the kind's body: a JSON object")
		}
		if err := in.checkStrings(i, at+".input", st.Input); err != nil {
			return err
		}
		if len(st.ForEach) > 0 {
			if err := in.checkForEach(i, at+".for_each"); err != nil {
				return err
			}
		}
	}
	return nil
}

func typeList() string {
	out := make([]string, len(Types))
	for i, t := range Types {
		out[i] = string(t)
	}
	return strings.Join(out, ", ")
}

// checkForEach checks that step i's for_each is a list of strings or one
// reference to a list.
func (in PipelineInput) checkForEach(i int, field string) error {
	raw := in.Steps[i].ForEach
	var items []string
	if json.Unmarshal(raw, &items) == nil {
		if len(items) > MaxFanOut {
			return Invalid(field, fmt.Sprintf("for_each holds at most %d items", MaxFanOut))
		}
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) != nil {
		return Invalid(field, "for_each is a list of strings, or one reference to a list output such as \"{{steps.NAME.paragraphs}}\"")
	}
	refs, whole, err := in.parse(i, field, one, false)
	if err != nil {
		return err
	}
	if !whole || refs[0].Step < 0 {
		return Invalid(field, "for_each is a list of strings, or one reference to a list output such as \"{{steps.NAME.paragraphs}}\"")
	}
	if shape, _ := in.ShapeOf(refs[0].Step, refs[0].Output); shape != List {
		return Invalid(field, fmt.Sprintf("for_each needs a list; %s of step %q is a text (lists: paragraphs, segments, or any output of a for_each step)",
			refs[0].Output, in.StepName(refs[0].Step)))
	}
	return nil
}

// checkStrings checks every reference in the strings of step i's input.
func (in PipelineInput) checkStrings(i int, field string, raw json.RawMessage) error {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return Invalid(field, "input is not JSON: "+err.Error())
	}
	var walk func(path string, v any) error
	walk = func(path string, v any) error {
		switch x := v.(type) {
		case string:
			_, _, err := in.parse(i, path, x, len(in.Steps[i].ForEach) > 0)
			return err
		case []any:
			for j, e := range x {
				if err := walk(fmt.Sprintf("%s[%d]", path, j), e); err != nil {
					return err
				}
			}
		case map[string]any:
			for k, e := range x {
				if err := walk(path+"."+k, e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(field, v)
}

// parse reads the references in s, a string of step i's input; whole is
// true when s is exactly one reference.
func (in PipelineInput) parse(i int, field, s string, inForEach bool) (refs []Ref, whole bool, err error) {
	for _, m := range reference.FindAllStringSubmatch(s, -1) {
		ref, err := in.parseRef(i, field, m[1], inForEach)
		if err != nil {
			return nil, false, err
		}
		refs = append(refs, ref)
	}
	whole = len(refs) == 1 && reference.FindString(strings.TrimSpace(s)) == strings.TrimSpace(s)
	return refs, whole, nil
}

func (in PipelineInput) parseRef(i int, field, expr string, inForEach bool) (Ref, error) {
	if expr == "item" || expr == "index" {
		if !inForEach {
			return Ref{}, Invalid(field, fmt.Sprintf("{{%s}} is only known in a step with for_each", expr))
		}
		return Ref{Step: -1, Output: expr}, nil
	}
	parts := strings.Split(expr, ".")
	if len(parts) != 3 || parts[0] != "steps" {
		return Ref{}, Invalid(field, fmt.Sprintf("{{%s}} is not a reference; write {{steps.NAME.OUTPUT}}, or {{item}} and {{index}} in a for_each step", expr))
	}
	j := -1
	for k := range in.Steps {
		if in.StepName(k) == parts[1] {
			j = k
		}
	}
	switch {
	case j < 0:
		return Ref{}, Invalid(field, fmt.Sprintf("{{%s}} names no step: there is no step %q", expr, parts[1]))
	case j >= i:
		return Ref{}, Invalid(field, fmt.Sprintf("{{%s}} names step %q, which does not run before this one", expr, parts[1]))
	}
	if _, ok := in.ShapeOf(j, parts[2]); !ok {
		return Ref{}, Invalid(field, fmt.Sprintf("{{%s}}: step %q (%s) gives no %q; it gives %s", expr, parts[1], in.Steps[j].Kind, parts[2], outputList(in.Steps[j].Kind)))
	}
	return Ref{Step: j, Output: parts[2]}, nil
}

func outputList(k Type) string {
	var out []string
	for name := range PipelineOutputs[k] {
		out = append(out, name)
	}
	if len(out) == 0 {
		return "nothing a later step can take"
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// Referenced lists the steps whose outputs step i takes, in order.
func (in PipelineInput) Referenced(i int) []int {
	seen := map[int]bool{}
	for _, m := range reference.FindAllStringSubmatch(string(in.Steps[i].Input)+string(in.Steps[i].ForEach), -1) {
		parts := strings.Split(strings.TrimSpace(m[1]), ".")
		if len(parts) != 3 {
			continue
		}
		for k := range i {
			if in.StepName(k) == parts[1] {
				seen[k] = true
			}
		}
	}
	var out []int
	for k := range seen {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Lookup finds a reference's value; ok is false when it is not known.
type Lookup func(ref Ref) (Value, bool)

// Substitute returns step i's input with every reference replaced by its
// value, written into its string (a list as its texts separated by blank
// lines); except that a list element that is exactly one reference to a
// list is replaced by that list's texts, so ["{{steps.s.paragraphs}}"]
// is the list of paragraphs.
func (in PipelineInput) Substitute(i int, look Lookup) (json.RawMessage, error) {
	var v any
	if err := json.Unmarshal(in.Steps[i].Input, &v); err != nil {
		return nil, err
	}
	var err error
	keep := func(e error) {
		if e != nil && err == nil {
			err = e
		}
	}
	var walk func(v any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case string:
			out, e := in.fill(i, x, look)
			keep(e)
			return out
		case []any:
			out := make([]any, 0, len(x))
			for _, e := range x {
				if list, ok, lerr := in.listOf(i, e, look); ok || lerr != nil {
					keep(lerr)
					for _, item := range list {
						out = append(out, item)
					}
					continue
				}
				out = append(out, walk(e))
			}
			return out
		case map[string]any:
			for k, e := range x {
				x[k] = walk(e)
			}
		}
		return v
	}
	v = walk(v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// listOf is the list v stands for, when v is a string that is exactly one
// reference to a list.
func (in PipelineInput) listOf(i int, v any, look Lookup) ([]string, bool, error) {
	s, ok := v.(string)
	if !ok {
		return nil, false, nil
	}
	refs, whole, err := in.parse(i, "input", s, len(in.Steps[i].ForEach) > 0)
	if err != nil || !whole {
		return nil, false, err
	}
	val, ok := look(refs[0])
	if !ok {
		return nil, false, fmt.Errorf("pipeline: %s has no value", s)
	}
	if val.Shape != List {
		return nil, false, nil
	}
	return val.List, true, nil
}

// fill replaces the references in s.
func (in PipelineInput) fill(i int, s string, look Lookup) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	var missing error
	out := reference.ReplaceAllStringFunc(s, func(m string) string {
		ref, err := in.parseRef(i, "input", strings.TrimSpace(reference.FindStringSubmatch(m)[1]), true)
		if err != nil {
			missing = err
			return ""
		}
		val, ok := look(ref)
		if !ok {
			missing = fmt.Errorf("pipeline: %s has no value", m)
			return ""
		}
		if val.Shape == List {
			return strings.Join(val.List, "\n\n")
		}
		return val.Text
	})
	return out, missing
}

// ForEachRef is the reference step i's for_each names, if it names one.
func (in PipelineInput) ForEachRef(i int) (Ref, bool) {
	var one string
	if json.Unmarshal(in.Steps[i].ForEach, &one) != nil {
		return Ref{}, false
	}
	refs, whole, err := in.parse(i, "for_each", one, false)
	if err != nil || !whole {
		return Ref{}, false
	}
	return refs[0], true
}

// Paragraphs splits text at blank lines, dropping empty pieces.
func Paragraphs(text string) []string {
	var out []string
	for p := range strings.SplitSeq(strings.ReplaceAll(text, "\r\n", "\n"), "\n\n") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Outputs reads the outputs a task of kind k gave from its result.
func Outputs(k Type, result json.RawMessage) (map[string]Value, error) {
	out := map[string]Value{}
	switch k {
	case TypeGenerateText, TypeDescribeImage:
		var r TextResult
		if err := json.Unmarshal(result, &r); err != nil {
			return nil, err
		}
		out["text"] = Value{Text: r.Text}
		out["paragraphs"] = Value{Shape: List, List: Paragraphs(r.Text)}
	case TypeSpeechToText:
		var r TranscriptResult
		if err := json.Unmarshal(result, &r); err != nil {
			return nil, err
		}
		out["text"] = Value{Text: r.Text}
		out["language"] = Value{Text: r.Language}
		out["paragraphs"] = Value{Shape: List, List: Paragraphs(r.Text)}
		segs := make([]string, len(r.Segments))
		for j, s := range r.Segments {
			segs[j] = strings.TrimSpace(s.Text)
		}
		out["segments"] = Value{Shape: List, List: segs}
	case TypeTextToSpeech:
		var r AudioResult
		if err := json.Unmarshal(result, &r); err != nil {
			return nil, err
		}
		out["audio"] = Value{Text: r.Artifact.URL}
	}
	return out, nil
}
