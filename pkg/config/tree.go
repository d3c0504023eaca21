package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Input limits. A ConfigMap holds at most 1 MiB, and a real selector config is a few KiB nested
// seven levels deep (additionalInfo adds two), so these only stop input meant to exhaust the
// daemon's memory or stack.
const (
	MaxConfigBytes = 1 << 20
	MaxDepth       = 32
)

// trailingError is JSON whose first value is complete and is followed by more: never YAML either.
type trailingError struct{ msg string }

func (e *trailingError) Error() string { return e.msg }

// node is one JSON value. Objects keep their members in document order, so problems are reported
// in the order the file has them and a repeated key is seen (encoding/json silently keeps the last).
type node struct {
	kind    kind
	text    string // kindString: the string; kindNumber: the number as written
	boolean bool
	elems   []*node
	members []member
}

type member struct {
	key string
	val *node
}

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k kind) String() string {
	return [...]string{"null", "boolean", "number", "string", "list", "object"}[k]
}

// decodeDocument reads a JSON or YAML document. Input whose first character opens a JSON value is
// read as JSON, so syntax errors point at a line and column of the file itself; everything else
// (and JSON-looking input that only YAML accepts, such as `{a: b}`) goes through sigs.k8s.io/yaml,
// which rejects duplicate keys and reports YAML syntax errors by line.
func decodeDocument(data []byte) (*node, error) {
	if len(data) > MaxConfigBytes {
		return nil, fmt.Errorf("config is %d bytes, more than the %d a config may have", len(data), MaxConfigBytes)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("config is empty")
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		n, jsonErr := decodeJSON(data)
		if jsonErr == nil {
			return n, nil
		}
		// A complete JSON value followed by more ("{...}]}, {...}]}" after a bad edit) is an error
		// however YAML would read it: YAML would keep the first value and drop the rest silently.
		var syntax *json.SyntaxError
		var trailing *trailingError
		if errors.As(jsonErr, &trailing) || !errors.As(jsonErr, &syntax) && !errors.Is(jsonErr, io.ErrUnexpectedEOF) {
			return nil, jsonErr
		}
		// YAML flow style ({a: b}) and JSON with trailing commas read as YAML.
		if err := oneYAMLDocument(data); err != nil {
			return nil, err
		}
		if j, err := yaml.YAMLToJSONStrict(data); err == nil {
			return decodeJSON(j)
		}
		return nil, jsonErr
	}
	if err := oneYAMLDocument(data); err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	n, err := decodeJSON(j)
	if err == nil && n.kind == kindNull { // only comments, or "---"
		return nil, errors.New("config is empty")
	}
	return n, err
}

// oneYAMLDocument checks that data is a single YAML document: sigs.k8s.io/yaml converts the first
// one and silently drops whatever follows (a second document, or junk after a flow mapping). An
// empty document after a trailing "---" is allowed.
func oneYAMLDocument(data []byte) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var first yamlv3.Node
	if err := dec.Decode(&first); err != nil {
		return nil // no document (reported as empty), or a syntax error sigs.k8s.io/yaml reports
	}
	for {
		var next yamlv3.Node
		err := dec.Decode(&next)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("invalid YAML after the document that ends at line %d: %w", lastLine(&first), err)
		case !emptyDocument(&next):
			return fmt.Errorf("invalid YAML: a second document starts at line %d; the config must be one document", next.Line)
		}
	}
}

func emptyDocument(n *yamlv3.Node) bool {
	if len(n.Content) == 0 {
		return true
	}
	c := n.Content[0]
	return len(n.Content) == 1 && c.Kind == yamlv3.ScalarNode && c.Tag == "!!null" && c.Value == ""
}

// lastLine is the last line a node's content reaches.
func lastLine(n *yamlv3.Node) int {
	line := n.Line
	for _, c := range n.Content {
		if l := lastLine(c); l > line {
			line = l
		}
	}
	return line
}

// decodeJSON reads exactly one JSON value.
func decodeJSON(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := readValue(dec, 0)
	if err != nil {
		return nil, jsonError(data, err)
	}
	end := dec.InputOffset()
	if tok, err := dec.Token(); err != io.EOF {
		// Where the junk starts, not where the decoder gave up on it.
		rest := data[end:]
		at := end + int64(len(rest)-len(bytes.TrimLeft(rest, " \t\r\n")))
		line, col := position(data, at)
		what := fmt.Sprintf("%v", tok)
		if err != nil {
			what = fmt.Sprintf("%q", clip(data[at:], 20))
		}
		return nil, &trailingError{fmt.Sprintf("invalid JSON at line %d, column %d: unexpected %s after the top-level value", line, col, what)}
	}
	return n, nil
}

// clip returns at most n bytes of b, for quoting a piece of bad input in a message.
func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

func readValue(dec *json.Decoder, depth int) (*node, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", MaxDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &node{kind: kindNull}, nil
	case bool:
		return &node{kind: kindBool, boolean: t}, nil
	case json.Number:
		return &node{kind: kindNumber, text: string(t)}, nil
	case string:
		return &node{kind: kindString, text: t}, nil
	case json.Delim:
		if t == '[' {
			n := &node{kind: kindArray}
			for dec.More() {
				e, err := readValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.elems = append(n.elems, e)
			}
			return n, closeDelim(dec)
		}
		// The decoder only hands out '{' or '[' here: closing delimiters end the loops above.
		n := &node{kind: kindObject}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, err
			}
			key, _ := kt.(string) // the decoder allows only strings as object keys
			v, err := readValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			n.members = append(n.members, member{key: key, val: v})
		}
		return n, closeDelim(dec)
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

func closeDelim(dec *json.Decoder) error {
	if _, err := dec.Token(); err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	return nil
}

// jsonError names the line and column of a JSON syntax error.
func jsonError(data []byte, err error) error {
	var syntax *json.SyntaxError
	switch {
	case errors.As(err, &syntax):
		line, col := position(data, syntax.Offset)
		return fmt.Errorf("invalid JSON at line %d, column %d: %w", line, col, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("invalid JSON: unexpected end of input")
	}
	return fmt.Errorf("invalid JSON: %w", err)
}

// position turns a byte offset into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	before := data[:offset]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(offset) - (bytes.LastIndexByte(before, '\n') + 1)
	if col == 0 {
		col = 1
	}
	return line, col
}

// value turns a node back into encoding/json's generic form (numbers as json.Number, so they keep
// their text), for values kept verbatim such as an IPAM plugin's configuration.
func (n *node) value() any {
	switch n.kind {
	case kindBool:
		return n.boolean
	case kindNumber:
		return json.Number(n.text)
	case kindString:
		return n.text
	case kindArray:
		out := make([]any, len(n.elems))
		for i, e := range n.elems {
			out[i] = e.value()
		}
		return out
	case kindObject:
		out := make(map[string]any, len(n.members))
		for _, m := range n.members {
			out[m.key] = m.val.value()
		}
		return out
	}
	return nil
}
