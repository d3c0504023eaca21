package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

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
		var syntax *json.SyntaxError
		if !errors.As(jsonErr, &syntax) && !errors.Is(jsonErr, io.ErrUnexpectedEOF) {
			return nil, jsonErr
		}
		if j, err := yaml.YAMLToJSONStrict(data); err == nil {
			return decodeJSON(j)
		}
		return nil, jsonErr
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

// decodeJSON reads exactly one JSON value.
func decodeJSON(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	n, err := readValue(dec)
	if err != nil {
		return nil, jsonError(data, err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, jsonError(data, err)
		}
		line, col := position(data, dec.InputOffset())
		return nil, fmt.Errorf("invalid JSON at line %d, column %d: unexpected %v after the top-level value", line, col, tok)
	}
	return n, nil
}

func readValue(dec *json.Decoder) (*node, error) {
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
				e, err := readValue(dec)
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
			v, err := readValue(dec)
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
