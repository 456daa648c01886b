package e2e_test

// The README is a contract (issue 14): every curl example in README.md runs
// here, as written, against a real server on a free port (the local start:
// the embedded Redis, the open API), with fake providers behind it, and its
// answer is compared with what the README shows. README.id.md must show the
// same commands.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/siganteng/siganteng/internal/provider/espeak"
	"github.com/siganteng/siganteng/internal/provider/providertest"
)

// readmeExample is one command of a README code block and what the README
// shows it answers.
type readmeExample struct {
	line    int
	command string // continuation lines joined
	shown   string // the comment lines after it, and an http or json block right after its sh block
	later   bool   // the shown answer is the task's once it ends ("# later: …")
	skip    string // why it is not run, from a <!-- readme-test: skip … --> line before the block
}

// readmeExamples reads the curl commands of path's sh blocks.
func readmeExamples(t *testing.T, path string) []readmeExample {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var (
		out             []readmeExample
		lang, skip      string
		inBlock         bool
		pending         string // a command still being continued
		pendingLine     int
		lastBlockClosed int // the line where the last sh block closed
		attachTo        = -1
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	n := 0
	var extra strings.Builder
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			if !inBlock {
				inBlock, lang = true, strings.TrimPrefix(trimmed, "```")
				extra.Reset()
				continue
			}
			inBlock = false
			switch {
			case lang == "sh":
				lastBlockClosed, attachTo = n, len(out)-1
				skip = ""
			case (lang == "http" || lang == "json") && attachTo >= 0:
				out[attachTo].shown += "\n" + extra.String()
				attachTo = -1
			}
			continue
		}
		if !inBlock {
			if strings.HasPrefix(trimmed, "<!-- readme-test: skip") {
				skip = strings.TrimSuffix(strings.TrimPrefix(trimmed, "<!-- readme-test: skip"), "-->")
			}
			if trimmed != "" && n > lastBlockClosed {
				attachTo = -1 // prose between: a later block shows something else
			}
			continue
		}
		if lang != "sh" {
			extra.WriteString(line + "\n")
			continue
		}
		switch {
		case pending != "":
			pending += " " + strings.TrimSuffix(trimmed, "\\")
		case strings.HasPrefix(trimmed, "curl "):
			pending, pendingLine = strings.TrimSuffix(trimmed, "\\"), n
		case strings.HasPrefix(trimmed, "#") && len(out) > 0 && out[len(out)-1].line > lastBlockClosed:
			text := strings.TrimSpace(strings.TrimPrefix(trimmed, "#"))
			if strings.HasPrefix(text, "later:") {
				out[len(out)-1].later = true
			}
			out[len(out)-1].shown += text + "\n"
		}
		if pending != "" && !strings.HasSuffix(trimmed, "\\") {
			out = append(out, readmeExample{line: pendingLine, command: pending, skip: skip})
			pending = ""
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// Fields of an answer that the README's shown answers are held to: the
// words a client branches on. Illustrative values (texts, ids, times,
// counts) are not compared.
var contractFields = regexp.MustCompile(`"(status|type|provider|code|location|format|content_type|voice|capability|title|object)":("[^"…]*"|\d+)`)

var (
	shownID    = regexp.MustCompile(`"(?:task|pipeline)_id":"([0-9a-f]{4})`)
	actualID   = regexp.MustCompile(`"(?:task|pipeline)_id":"([0-9a-f-]{36})"`)
	commandID  = regexp.MustCompile(`\b([0-9a-f]{4})(?:[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|…)`)
	cursorRef  = regexp.MustCompile(`cursor=[^&'" ]*…`)
	nextCursor = regexp.MustCompile(`"next_cursor":"([^"]+)"`)
	httpStatus = regexp.MustCompile(`(?m)^(?:HTTP/1\.1 (\d{3})|(\d{3}) \{)`)
)

// expectedStatus is the HTTP status the shown answer says, 0 for "any 2xx".
func expectedStatus(shown string) int {
	if m := httpStatus.FindStringSubmatch(shown); m != nil {
		n, _ := strconv.Atoi(m[1] + m[2])
		return n
	}
	if strings.Contains(shown, `"title":`) { // a problem document names its status
		if m := regexp.MustCompile(`"status":(\d{3})`).FindStringSubmatch(shown); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}

func TestREADMEExamples(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	examples := readmeExamples(t, "../../README.md")
	require.Greater(t, len(examples), 20, "the README's examples were found")

	fake := providertest.NewOpenAIFake(providertest.WithDelay(time.Second)) // long enough to cancel a running task
	t.Cleanup(fake.Close)
	env := map[string]string{ // the local start, with a provider and espeak-ng for speech
		"LLM_PROVIDER": "openai", "OPENAI_BASE_URL": fake.URL(), "OPENAI_API_KEY": testKey,
		"TTS_PROVIDER": "espeak", "STT_PROVIDER": "openai", "LOG_LEVEL": "warn",
	}
	s := start(t, "serve", env)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "photo.png"), providertest.PNG1x1, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rapat.mp3"), append([]byte("ID3\x03\x00\x00\x00\x00\x00\x00"), make([]byte, 2048)...), 0o600))

	ids := map[string]string{} // the README's id prefixes to the real ids
	var cursor, lastID string
	run := func(command string) (int, string) {
		cmd := exec.Command("bash", "-c", strings.Replace(command, "curl ", `curl -sS -w '\n__HTTP__%{http_code}\n' `, 1))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SIGANTENG_KEY=")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s\n%s", command, out)
		body, code, ok := strings.Cut(string(out), "\n__HTTP__")
		require.True(t, ok, "%s\n%s", command, out)
		status, _ := strconv.Atoi(strings.TrimSpace(code))
		return status, body
	}
	ran := 0
	for _, ex := range examples {
		if ex.skip != "" {
			t.Logf("README.md:%d not run:%s", ex.line, ex.skip)
			continue
		}
		command := strings.ReplaceAll(ex.command, "http://127.0.0.1:8000", s.url)
		for _, m := range commandID.FindAllStringSubmatch(command, -1) {
			real, ok := ids[m[1]]
			require.True(t, ok, "README.md:%d names task %s…, which no earlier example showed", ex.line, m[1])
			command = strings.ReplaceAll(command, m[0], real)
		}
		if cursorRef.MatchString(command) {
			require.NotEmpty(t, cursor, "README.md:%d uses a cursor no earlier example gave", ex.line)
			command = cursorRef.ReplaceAllString(command, "cursor="+cursor)
		}
		ctx := fmt.Sprintf("README.md:%d: %s", ex.line, ex.command)
		status, body := run(command)
		// A read (a GET) is repeated until it shows what the README shows,
		// as a client polls: tasks finish while the examples run.
		missing := func(answer string) bool {
			for _, want := range contractFields.FindAllString(ex.shown, -1) {
				if !strings.Contains(answer, want) {
					return true
				}
			}
			return strings.Contains(ex.shown, `"next_cursor"`) && !strings.Contains(answer, `"next_cursor"`)
		}
		if isRead(command) && !ex.later {
			for deadline := time.Now().Add(20 * time.Second); missing(body) && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
				status, body = run(command)
			}
		}
		if want := expectedStatus(ex.shown); want != 0 {
			require.Equal(t, want, status, "%s\n%s", ctx, body)
		} else {
			require.True(t, status >= 200 && status < 300, "%s: status %d\n%s", ctx, status, body)
		}
		// Ids and cursors the answer gives, for the examples after it.
		shownIDs, actualIDs := shownID.FindAllStringSubmatch(ex.shown, -1), actualID.FindAllStringSubmatch(body, -1)
		for i := 0; i < len(shownIDs) && i < len(actualIDs); i++ {
			if _, ok := ids[shownIDs[i][1]]; !ok {
				ids[shownIDs[i][1]] = actualIDs[i][1]
			}
		}
		if len(actualIDs) > 0 {
			lastID = actualIDs[0][1]
		}
		if m := nextCursor.FindStringSubmatch(body); m != nil {
			cursor = m[1]
		}
		answer := body
		if ex.later { // the task's record once it ends
			require.NotEmpty(t, lastID, ctx)
			rec, _ := await(t, s.url, lastID, 20*time.Second)
			require.NotEqual(t, "PENDING", rec.Status, ctx)
			_, answer = run("curl " + s.url + "/background/tasks/" + lastID)
		}
		for _, want := range contractFields.FindAllString(ex.shown, -1) {
			require.Contains(t, answer, want, "%s\nshown:\n%s\nactual:\n%s", ctx, ex.shown, answer)
		}
		if strings.Contains(command, " -o ") {
			out := regexp.MustCompile(` -o (\S+)`).FindStringSubmatch(command)[1]
			info, err := os.Stat(filepath.Join(dir, out))
			require.NoError(t, err, ctx)
			require.Positive(t, info.Size(), ctx)
			if strings.HasSuffix(out, ".wav") && espeak.Available("") {
				head := make([]byte, 4)
				f, _ := os.Open(filepath.Join(dir, out))
				_, _ = f.Read(head)
				f.Close()
				require.Equal(t, "RIFF", string(head), "%s: a WAV file, as its name says", ctx)
			}
		}
		ran++
	}
	t.Logf("%d README examples run", ran)
	require.Equal(t, len(examples), ran+countSkipped(examples))
}

// isRead reports whether command only reads (a GET that writes no file and
// follows no stream), so repeating it changes nothing.
func isRead(command string) bool {
	for _, flag := range []string{" -X", " -d ", " -F ", " -N", " -o "} {
		if strings.Contains(command, flag) {
			return false
		}
	}
	return true
}

func countSkipped(examples []readmeExample) int {
	n := 0
	for _, ex := range examples {
		if ex.skip != "" {
			n++
		}
	}
	return n
}

// README.id.md shows the same commands as README.md, in the same order.
func TestREADMEsShowTheSameCommands(t *testing.T) {
	t.Parallel()
	// The same requests: methods, paths, headers and flags. What a person
	// reads (prompts, texts, file names, an idempotency key) is translated.
	translated := []*regexp.Regexp{
		regexp.MustCompile(`("(?:prompt|text)":\s*)"[^"]*"`),
		regexp.MustCompile(`(@|-o |base64 -w0 )[^\s)]+`),
		regexp.MustCompile(`(prompt=)'[^']*'`),
		regexp.MustCompile(`(Idempotency-Key: )[^']*`),
	}
	commands := func(path string) []string {
		var out []string
		for _, ex := range readmeExamples(t, path) {
			c := ex.command
			for _, re := range translated {
				c = re.ReplaceAllString(c, "${1}…")
			}
			out = append(out, c)
		}
		return out
	}
	english, indonesian := commands("../../README.md"), commands("../../README.id.md")
	require.NotEmpty(t, english)
	require.Equal(t, english, indonesian, "README.id.md's examples are README.md's")
}

// The two READMEs keep the same shape: the same headings at each level, in
// the same order, and the same code blocks, so neither falls behind.
func TestREADMEsHaveTheSameShape(t *testing.T) {
	t.Parallel()
	shape := func(path string) (headings []int, blocks []string) {
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		inBlock := false
		for line := range strings.SplitSeq(string(raw), "\n") {
			switch {
			case strings.HasPrefix(line, "```"):
				if !inBlock {
					blocks = append(blocks, strings.TrimPrefix(line, "```"))
				}
				inBlock = !inBlock
			case !inBlock && strings.HasPrefix(line, "#"):
				headings = append(headings, len(line)-len(strings.TrimLeft(line, "#")))
			}
		}
		return headings, blocks
	}
	enHeadings, enBlocks := shape("../../README.md")
	idHeadings, idBlocks := shape("../../README.id.md")
	require.Equal(t, enHeadings, idHeadings, "the same headings, level by level")
	require.Equal(t, enBlocks, idBlocks, "the same code blocks, language by language")
}
