package e2e

// An evaluator for the GitHub Actions expressions the workflows use in if:,
// outputs and env (docs.github.com, "Evaluate expressions in workflows and
// actions"): literals, context paths, ! == != < <= > >= && ||, parentheses
// and the functions below. Anything else is an error, so a workflow using
// more than this fails its test instead of being misread.

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// ghStatus is what the status functions answer for one job.
type ghStatus struct {
	needsSucceeded bool // success(): every job in needs succeeded
	needsFailed    bool // failure(): one of them failed
}

type ghEval struct {
	src    string
	pos    int
	ctx    map[string]any
	status ghStatus
}

// ghExpr evaluates an expression (with or without ${{ }}) against the
// contexts given (github, needs, steps, env, vars…).
func ghExpr(src string, ctx map[string]any, status ghStatus) (any, error) {
	src = strings.TrimSpace(src)
	if s, ok := strings.CutPrefix(src, "${{"); ok {
		src = strings.TrimSuffix(strings.TrimSpace(s), "}}")
	}
	e := &ghEval{src: src, ctx: ctx, status: status}
	v, err := e.or()
	if err != nil {
		return nil, err
	}
	e.space()
	if e.pos != len(e.src) {
		return nil, fmt.Errorf("unexpected %q at %d in %q", e.src[e.pos:], e.pos, src)
	}
	return v, nil
}

// ghJobIf evaluates a job's if:, which GitHub wraps in success() && (…)
// unless it calls a status function itself.
func ghJobIf(cond string, ctx map[string]any, status ghStatus) (bool, error) {
	if cond == "" {
		return status.needsSucceeded, nil
	}
	inner := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(cond), "${{"), "}}")
	if !strings.Contains(inner, "success()") && !strings.Contains(inner, "failure()") &&
		!strings.Contains(inner, "always()") && !strings.Contains(inner, "cancelled()") {
		inner = "success() && (" + inner + ")"
	}
	v, err := ghExpr(inner, ctx, status)
	return ghTruthy(v), err
}

// ghInterpolate replaces every ${{ }} in s with its value as text.
func ghInterpolate(s string, ctx map[string]any) (string, error) {
	var out strings.Builder
	for {
		i := strings.Index(s, "${{")
		if i < 0 {
			out.WriteString(s)
			return out.String(), nil
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			return "", fmt.Errorf("unclosed ${{ in %q", s)
		}
		v, err := ghExpr(s[i+3:i+j], ctx, ghStatus{needsSucceeded: true})
		if err != nil {
			return "", err
		}
		out.WriteString(s[:i])
		out.WriteString(ghString(v))
		s = s[i+j+2:]
	}
}

func (e *ghEval) space() {
	for e.pos < len(e.src) && unicode.IsSpace(rune(e.src[e.pos])) {
		e.pos++
	}
}

func (e *ghEval) eat(tok string) bool {
	e.space()
	if strings.HasPrefix(e.src[e.pos:], tok) {
		e.pos += len(tok)
		return true
	}
	return false
}

func (e *ghEval) or() (any, error) {
	l, err := e.and()
	if err != nil {
		return nil, err
	}
	for e.eat("||") {
		r, err := e.and()
		if err != nil {
			return nil, err
		}
		if !ghTruthy(l) {
			l = r
		}
	}
	return l, nil
}

func (e *ghEval) and() (any, error) {
	l, err := e.equality()
	if err != nil {
		return nil, err
	}
	for e.eat("&&") {
		r, err := e.equality()
		if err != nil {
			return nil, err
		}
		if ghTruthy(l) {
			l = r
		}
	}
	return l, nil
}

func (e *ghEval) equality() (any, error) {
	l, err := e.comparison()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case e.eat("=="):
			r, err := e.comparison()
			if err != nil {
				return nil, err
			}
			l = ghEqual(l, r)
		case e.eat("!="):
			r, err := e.comparison()
			if err != nil {
				return nil, err
			}
			l = !ghEqual(l, r)
		default:
			return l, nil
		}
	}
}

func (e *ghEval) comparison() (any, error) {
	l, err := e.unary()
	if err != nil {
		return nil, err
	}
	for _, op := range []string{"<=", ">=", "<", ">"} {
		if e.eat(op) {
			r, err := e.unary()
			if err != nil {
				return nil, err
			}
			a, b := ghNumber(l), ghNumber(r)
			switch op {
			case "<=":
				return a <= b, nil
			case ">=":
				return a >= b, nil
			case "<":
				return a < b, nil
			default:
				return a > b, nil
			}
		}
	}
	return l, nil
}

func (e *ghEval) unary() (any, error) {
	if e.eat("!") {
		v, err := e.unary()
		return !ghTruthy(v), err
	}
	return e.primary()
}

func (e *ghEval) primary() (any, error) {
	e.space()
	if e.pos >= len(e.src) {
		return nil, fmt.Errorf("unexpected end of %q", e.src)
	}
	switch c := e.src[e.pos]; {
	case c == '(':
		e.pos++
		v, err := e.or()
		if err != nil {
			return nil, err
		}
		if !e.eat(")") {
			return nil, fmt.Errorf("missing ) in %q", e.src)
		}
		return v, nil
	case c == '\'':
		var b strings.Builder
		for e.pos++; ; e.pos++ {
			if e.pos >= len(e.src) {
				return nil, fmt.Errorf("unclosed string in %q", e.src)
			}
			if e.src[e.pos] == '\'' {
				if e.pos+1 < len(e.src) && e.src[e.pos+1] == '\'' {
					b.WriteByte('\'')
					e.pos++
					continue
				}
				e.pos++
				return b.String(), nil
			}
			b.WriteByte(e.src[e.pos])
		}
	case c == '-' || unicode.IsDigit(rune(c)):
		start := e.pos
		for e.pos++; e.pos < len(e.src) && (unicode.IsDigit(rune(e.src[e.pos])) || e.src[e.pos] == '.'); e.pos++ {
		}
		return strconv.ParseFloat(e.src[start:e.pos], 64)
	case unicode.IsLetter(rune(c)) || c == '_':
		name := e.ident()
		switch name {
		case "true":
			return true, nil
		case "false":
			return false, nil
		case "null":
			return nil, nil
		}
		if e.eat("(") {
			return e.call(name)
		}
		v, ok := e.ctx[name]
		if !ok {
			return nil, fmt.Errorf("unknown context %q in %q", name, e.src)
		}
		return e.path(v)
	}
	return nil, fmt.Errorf("unexpected %q at %d in %q", e.src[e.pos:], e.pos, e.src)
}

func (e *ghEval) ident() string {
	start := e.pos
	for e.pos < len(e.src) {
		c := rune(e.src[e.pos])
		if !unicode.IsLetter(c) && !unicode.IsDigit(c) && c != '_' && c != '-' {
			break
		}
		e.pos++
	}
	return e.src[start:e.pos]
}

// path follows .name and ['name'] from v; a missing property is null, as
// in GitHub.
func (e *ghEval) path(v any) (any, error) {
	for {
		var key string
		switch {
		case e.pos < len(e.src) && e.src[e.pos] == '.':
			e.pos++
			key = e.ident()
		case e.pos < len(e.src) && e.src[e.pos] == '[':
			e.pos++
			k, err := e.or()
			if err != nil {
				return nil, err
			}
			if !e.eat("]") {
				return nil, fmt.Errorf("missing ] in %q", e.src)
			}
			key = ghString(k)
		default:
			return v, nil
		}
		m, _ := v.(map[string]any)
		v = m[key]
	}
}

func (e *ghEval) call(name string) (any, error) {
	var args []any
	if !e.eat(")") {
		for {
			a, err := e.or()
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if e.eat(")") {
				break
			}
			if !e.eat(",") {
				return nil, fmt.Errorf("missing , or ) in %s() in %q", name, e.src)
			}
		}
	}
	str := func(i int) string { return strings.ToLower(ghString(args[i])) }
	switch {
	case name == "success" && len(args) == 0:
		return e.status.needsSucceeded, nil
	case name == "failure" && len(args) == 0:
		return e.status.needsFailed, nil
	case name == "always" && len(args) == 0:
		return true, nil
	case name == "cancelled" && len(args) == 0:
		return false, nil // the simulated runs are never cancelled
	case name == "contains" && len(args) == 2:
		return strings.Contains(str(0), str(1)), nil
	case name == "startsWith" && len(args) == 2:
		return strings.HasPrefix(str(0), str(1)), nil
	case name == "endsWith" && len(args) == 2:
		return strings.HasSuffix(str(0), str(1)), nil
	case name == "format" && len(args) >= 1:
		out := ghString(args[0])
		for i, a := range args[1:] {
			out = strings.ReplaceAll(out, "{"+strconv.Itoa(i)+"}", ghString(a))
		}
		return out, nil
	}
	return nil, fmt.Errorf("function %s with %d arguments is not supported here (%q)", name, len(args), e.src)
}

func ghTruthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case float64:
		return x != 0
	case string:
		return x != ""
	}
	return true
}

func ghString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func ghNumber(v any) float64 {
	switch x := v.(type) {
	case nil:
		return 0
	case bool:
		if x {
			return 1
		}
		return 0
	case float64:
		return x
	case string:
		if strings.TrimSpace(x) == "" {
			return 0
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return -1 << 62 // NaN in GitHub: equal to nothing
		}
		return f
	}
	return -1 << 62
}

// ghEqual is GitHub's loose equality: strings ignore case, other types are
// compared as numbers.
func ghEqual(a, b any) bool {
	as, aok := a.(string)
	bs, bok := b.(string)
	if aok && bok {
		return strings.EqualFold(as, bs)
	}
	if a == nil && b == nil {
		return true
	}
	return ghNumber(a) == ghNumber(b)
}
