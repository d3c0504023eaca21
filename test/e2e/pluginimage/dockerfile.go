package pluginimage

import (
	"bufio"
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// Dockerfile is what a Dockerfile's final stage makes of the image, in the layout's terms.
type Dockerfile struct {
	Base       string
	User       string
	Entrypoint []string
	Files      []File // sorted by path
}

// instruction is one Dockerfile instruction with its continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, COPY, ...
	args string
}

// ParseDockerfile reads the parts of a multi-stage Dockerfile the layout describes: the final
// stage's base, USER and ENTRYPOINT (exec form), and the files it copies from earlier stages: from a
// stage that runs `go build -o DIR/ ./cmd/NAME ...`, DIR/NAME is command NAME; from a stage that
// runs `apt-get install ... PKG`, a path is a file of the package PKG it installs. Anything else it
// copies is an error: the layout could not say where it comes from.
func ParseDockerfile(data string) (Dockerfile, error) {
	var instrs []instruction
	sc := bufio.NewScanner(strings.NewReader(data))
	var cur strings.Builder
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		instrs = append(instrs, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	type stage struct {
		base   string
		instrs []instruction
	}
	stages := map[string]*stage{}
	var last *stage
	for _, in := range instrs {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			last = &stage{base: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages[f[2]] = last
			}
			continue
		}
		if last != nil {
			last.instrs = append(last.instrs, in)
		}
	}
	if last == nil {
		return Dockerfile{}, fmt.Errorf("Dockerfile: no FROM")
	}
	d := Dockerfile{Base: last.base}
	for _, in := range last.instrs {
		switch in.cmd {
		case "USER":
			d.User = in.args
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &d.Entrypoint); err != nil {
				return Dockerfile{}, fmt.Errorf("Dockerfile: ENTRYPOINT %s: want the exec form: %w", in.args, err)
			}
		case "COPY":
			f := strings.Fields(in.args)
			if len(f) < 3 || !strings.HasPrefix(f[0], "--from=") {
				return Dockerfile{}, fmt.Errorf("Dockerfile: COPY %s: want COPY --from=STAGE SRC... DST", in.args)
			}
			from := stages[strings.TrimPrefix(f[0], "--from=")]
			if from == nil {
				return Dockerfile{}, fmt.Errorf("Dockerfile: COPY %s: no stage named so", in.args)
			}
			srcs, dst := f[1:len(f)-1], f[len(f)-1]
			if len(srcs) > 1 && !strings.HasSuffix(dst, "/") {
				return Dockerfile{}, fmt.Errorf("Dockerfile: COPY %s: several sources need a folder destination", in.args)
			}
			for _, src := range srcs {
				file := File{Path: dst}
				if strings.HasSuffix(dst, "/") {
					file.Path = dst + path.Base(src)
				}
				if name := builtCommand(from.instrs, src); name != "" {
					file.Command = name
				} else if pkgs := aptPackages(from.instrs); len(pkgs) == 1 {
					file.DebianPackage, file.DebianPath = pkgs[0], src
				} else {
					return Dockerfile{}, fmt.Errorf("Dockerfile: COPY of %s: its stage neither builds it from ./cmd nor installs one Debian package", src)
				}
				d.Files = append(d.Files, file)
			}
		}
	}
	sort.Slice(d.Files, func(i, j int) bool { return d.Files[i].Path < d.Files[j].Path })
	return d, nil
}

// builtCommand returns NAME when a RUN of the stage is `go build ... -o DIR/ ... ./cmd/NAME ...`
// and src is DIR/NAME.
func builtCommand(instrs []instruction, src string) string {
	for _, in := range instrs {
		if in.cmd != "RUN" || !strings.Contains(in.args, "go build") {
			continue
		}
		f := strings.Fields(in.args)
		out := ""
		for i, a := range f {
			if a == "-o" && i+1 < len(f) {
				out = f[i+1]
			}
		}
		for _, a := range f {
			if name, ok := strings.CutPrefix(a, "./cmd/"); ok && strings.HasSuffix(out, "/") && src == out+name {
				return name
			}
		}
	}
	return ""
}

// aptPackages returns the packages the stage's `apt-get install` installs.
func aptPackages(instrs []instruction) []string {
	var out []string
	for _, in := range instrs {
		for _, cmd := range strings.Split(in.args, "&&") {
			f := strings.Fields(cmd)
			if in.cmd != "RUN" || len(f) < 2 || f[0] != "apt-get" || !slices.Contains(f, "install") {
				continue
			}
			for _, a := range f[slices.Index(f, "install")+1:] {
				if !strings.HasPrefix(a, "-") {
					out = append(out, a)
				}
			}
		}
	}
	return out
}

// Diff lists, one line each, where the Dockerfile's image and the layout differ.
func (l Layout) Diff(d Dockerfile) []string {
	var out []string
	if d.Base != l.Base {
		out = append(out, fmt.Sprintf("base: Dockerfile %q, layout %q", d.Base, l.Base))
	}
	if d.User != l.User {
		out = append(out, fmt.Sprintf("user: Dockerfile %q, layout %q", d.User, l.User))
	}
	if !slices.Equal(d.Entrypoint, l.Entrypoint) {
		out = append(out, fmt.Sprintf("entrypoint: Dockerfile %q, layout %q", d.Entrypoint, l.Entrypoint))
	}
	want := append([]File(nil), l.Files...)
	sort.Slice(want, func(i, j int) bool { return want[i].Path < want[j].Path })
	for _, f := range want {
		if !slices.Contains(d.Files, f) {
			out = append(out, fmt.Sprintf("file %+v: in the layout, not (so) in the Dockerfile", f))
		}
	}
	for _, f := range d.Files {
		if !slices.Contains(want, f) {
			out = append(out, fmt.Sprintf("file %+v: in the Dockerfile, not (so) in the layout", f))
		}
	}
	return out
}
