package task_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/task"
)

func pipeline(t *testing.T, body string) task.PipelineInput {
	t.Helper()
	var in task.PipelineInput
	require.NoError(t, json.Unmarshal([]byte(body), &in))
	return in
}

// References are checked against the steps before and the outputs they
// give, naming the field.
func TestPipelineCheckNamesTheFieldAtFault(t *testing.T) {
	cases := []struct{ body, field string }{
		{`{"steps":[]}`, "steps"},
		{`{"steps":[{"kind":"generate_text","input":{"prompt":"a"}},{"kind":"generate_text","input":{"messages":[{"role":"user","content":"{{steps.1.text}}"}]}}]}`, "steps[1].input.messages[0].content"},
		{`{"steps":[{"name":"a b","kind":"generate_text","input":{}}]}`, "steps[0].name"},
		{`{"steps":[{"name":"a","kind":"generate_text","input":{}},{"name":"a","kind":"embed","input":{}}]}`, "steps[1].name"},
		{`{"steps":[{"kind":"generate_text","input":"prompt"}]}`, "steps[0].input"},
		{`{"steps":[{"kind":"generate_text","input":{"prompt":"{{ steps.0 }}"}}]}`, "steps[0].input.prompt"},
		{`{"steps":[{"kind":"generate_text","input":{"prompt":"x"}},{"kind":"generate_text","for_each":"{{steps.0.text}}","input":{}}]}`, "steps[1].for_each"},
		{`{"steps":[{"kind":"generate_text","for_each":{"a":1},"input":{}}]}`, "steps[0].for_each"},
		{`{"steps":[{"kind":"generate_text","input":{"prompt":"x"}}],"delay":0}`, "delay"},
	}
	for _, c := range cases {
		err := pipeline(t, c.body).Check()
		require.Error(t, err, c.body)
		require.Equal(t, c.field, task.FieldOf(err), "%s: %v", c.body, err)
	}
	ok := pipeline(t, `{"steps":[{"name":"t","kind":"speech_to_text","input":{"file_id":"f"}},
	  {"name":"p","kind":"generate_text","for_each":"{{steps.t.paragraphs}}","input":{"prompt":"{{index}}. {{item}} ({{steps.t.language}})"}},
	  {"kind":"embed","input":{"input":["{{steps.p.text}}"]}}]}`)
	require.NoError(t, ok.Check())
	require.Equal(t, []int{0}, ok.Referenced(1))
	require.Equal(t, []int{1}, ok.Referenced(2))
}

// A reference is written into its string; a list element that is exactly
// a reference to a list becomes the list's texts.
func TestPipelineSubstitute(t *testing.T) {
	in := pipeline(t, `{"steps":[{"name":"a","kind":"generate_text","input":{"prompt":"x"}},
	  {"kind":"embed","for_each":["i0","i1"],"input":{"input":["{{steps.a.paragraphs}}","{{item}}#{{index}}","{{steps.a.text}}"],"model":"m {{steps.a.paragraphs}}"}}]}`)
	require.NoError(t, in.Check())
	look := func(ref task.Ref) (task.Value, bool) {
		switch {
		case ref.Output == "paragraphs":
			return task.Value{Shape: task.List, List: []string{"p1", "p2"}}, true
		case ref.Output == "text":
			return task.Value{Text: "whole"}, true
		case ref.Output == "item":
			return task.Value{Text: []string{"i0", "i1"}[ref.Index]}, true
		case ref.Output == "index":
			return task.Value{Text: "1"}, true
		}
		return task.Value{}, false
	}
	out, err := in.Substitute(1, func(ref task.Ref) (task.Value, bool) {
		ref.Index = 1
		return look(ref)
	})
	require.NoError(t, err)
	require.JSONEq(t, `{"input":["p1","p2","i1#1","whole"],"model":"m p1\n\np2"}`, string(out))
}

func TestParagraphsAndOutputs(t *testing.T) {
	require.Equal(t, []string{"one", "two lines\nhere", "three"}, task.Paragraphs("one\r\n\r\ntwo lines\nhere\n\n\n\n  three  \n"))
	outs, err := task.Outputs(task.TypeSpeechToText, json.RawMessage(`{"text":"a\n\nb","language":"en","segments":[{"text":" a "},{"text":"b"}],"provider":"x"}`))
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, outs["segments"].List)
	require.Equal(t, "en", outs["language"].Text)
	outs, err = task.Outputs(task.TypeTextToSpeech, json.RawMessage(`{"artifact":{"url":"/background/tasks/x/artifact"},"provider":"p","format":"wav"}`))
	require.NoError(t, err)
	require.Equal(t, "/background/tasks/x/artifact", outs["audio"].Text)
}
