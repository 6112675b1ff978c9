package site

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/unikernel-blog/blog/magefiles/config"
)

// Tooling is what this project adds to a blog, and what its build writes:
// never part of the site. The Site step excludes it by itself, so a blog
// adopts the tooling without editing its exclude:.
var Tooling = []string{
	"magefiles", "mage.go", "go.mod", "go.sum", "go.work", "go.work.sum", "hostinit",
	"_build", "_mirage", ".ci", ".github", ".travis.yml", "Gemfile", "Gemfile.lock",
}

// alwaysExcluded are never sources, whatever _config.yml says: build output,
// caches and version control.
var alwaysExcluded = []string{"_site", ".git", ".jekyll-cache", ".sass-cache", ".jekyll-metadata"}

// jekyllDefaultExcludes is Jekyll 4's own exclusion list, which it adds to
// every site's exclude: (Jekyll::Configuration::DEFAULT_EXCLUDES and
// #add_default_excludes in lib/jekyll/configuration.rb, 4.x; listed under
// "Exclude" in https://jekyllrb.com/docs/configuration/options/): the gems
// and packages Bundler and npm install inside a blog are not its sources, so
// they are neither hashed into the build id nor screened for secrets. Jekyll
// 3 (the version github-pages pins) has the same list without the first
// three as DEFAULTS["exclude"], replaced by a blog's own exclude:; the
// overlay passes the whole list, so both versions skip it. As in Jekyll, a
// path include: names is read all the same.
var jekyllDefaultExcludes = []string{
	".sass-cache", ".jekyll-cache", "gemfiles", "Gemfile", "Gemfile.lock", "node_modules",
	"vendor/bundle/", "vendor/cache/", "vendor/gems/", "vendor/ruby/",
}

// jekyllConfig is what the Site step reads of the author's _config.yml.
type jekyllConfig struct {
	Exclude           []string       `yaml:"exclude"`
	Include           []string       `yaml:"include"`
	StrictFrontMatter *bool          `yaml:"strict_front_matter"`
	Liquid            map[string]any `yaml:"liquid"`
}

func readJekyllConfig(root string) (*jekyllConfig, []byte, error) {
	data, err := os.ReadFile(filepath.Join(root, config.File))
	if err != nil {
		return nil, nil, fmt.Errorf("site: reading %s: %w", config.File, err)
	}
	var c jekyllConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, nil, fmt.Errorf("site: %s is not valid YAML: %w; fix it and run `mage site` again", filepath.Join(root, config.File), err)
	}
	return &c, data, nil
}

// excludes is the exclude: list the build passes to jekyll: the author's own
// entries first, then the tooling's, build output and Jekyll's defaults. Jekyll replaces a list given in a later
// config file, so the overlay must carry the author's entries too.
func (c *jekyllConfig) excludes() []string {
	out := append([]string{}, c.Exclude...)
	seen := map[string]bool{}
	for _, e := range out {
		seen[strings.Trim(e, "/")] = true
	}
	for _, e := range slices.Concat(Tooling, alwaysExcluded, jekyllDefaultExcludes) {
		if !seen[strings.Trim(e, "/")] {
			out = append(out, e)
			seen[strings.Trim(e, "/")] = true
		}
	}
	return out
}

// strictness are the settings that turn Jekyll's quiet problems into errors,
// each unless the author set it: strict_front_matter (a front matter that is
// not YAML fails instead of publishing the page without its title), Liquid's
// strict parsing and unknown filters. Liquid's strict_variables is left to
// the author: it also fails on `{% if page.x %}` and `| default:` for an
// unset x, which templates do for every optional field (minima 2.5 fails on
// its own post layout, and this repository's feed on a post without
// `updated`); a blog whose templates never read an unset variable sets
// liquid: strict_variables: true itself, and the Site step keeps it.
func (c *jekyllConfig) strictness() map[string]any {
	out := map[string]any{}
	if c.StrictFrontMatter == nil {
		out["strict_front_matter"] = true
	}
	liquid := map[string]any{}
	if _, set := c.Liquid["error_mode"]; !set {
		liquid["error_mode"] = "strict"
	}
	if _, set := c.Liquid["strict_filters"]; !set {
		liquid["strict_filters"] = true
	}
	if len(liquid) > 0 {
		out["liquid"] = liquid
	}
	return out
}

// overlay is the extra config file passed after the author's: the build id,
// the merged exclude: and the strictness settings.
func (c *jekyllConfig) overlay(buildID string) ([]byte, error) {
	m := c.strictness()
	m["exclude"] = c.excludes()
	if buildID != "" {
		m["build_id"] = buildID
	}
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("site: writing the build's config overlay: %w", err)
	}
	return append([]byte("# Written by the Site step for each build; see magefiles/site.\n"), b...), nil
}

// sourceFilter says which paths (relative, slash-separated) jekyll reads as
// sources, as Jekyll's EntryFilter does: a path its include: names is read;
// otherwise hidden (.x), backup (x~) and #x names are not, nor what exclude:
// (the author's, the tooling's, build output and Jekyll's defaults) names. Patterns match as
// Jekyll matches them: File.fnmatch without FNM_PATHNAME (so * crosses
// slashes) against the relative path, or as a plain prefix of it.
type sourceFilter struct {
	exclude, include []string
}

func (c *jekyllConfig) filter() sourceFilter {
	f := sourceFilter{}
	for _, e := range c.excludes() {
		f.exclude = append(f.exclude, strings.TrimPrefix(filepath.ToSlash(e), "/"))
	}
	for _, e := range c.Include {
		f.include = append(f.include, strings.TrimPrefix(filepath.ToSlash(e), "/"))
	}
	return f
}

// skip reports whether the entry rel (and everything under it) is not read.
func (f sourceFilter) skip(rel string, dir bool) bool {
	if jekyllGlob(f.include, rel, dir) {
		return false
	}
	base := path.Base(rel)
	if strings.HasPrefix(base, ".") || strings.HasPrefix(base, "#") || strings.HasSuffix(base, "~") {
		return true
	}
	return jekyllGlob(f.exclude, rel, dir)
}

// isSource reports whether the file rel is a source: no directory on its
// way is skipped, nor the file itself.
func (f sourceFilter) isSource(rel string) bool {
	parts := strings.Split(rel, "/")
	for i := range parts {
		if f.skip(strings.Join(parts[:i+1], "/"), i < len(parts)-1) {
			return false
		}
	}
	return true
}

// jekyllGlob is EntryFilter#glob_include? for string patterns.
func jekyllGlob(patterns []string, rel string, dir bool) bool {
	for _, p := range patterns {
		if p == "" {
			continue
		}
		if strings.HasPrefix(rel, p) || (dir && p == rel+"/") || fnmatch(p, rel) {
			return true
		}
	}
	return false
}

// fnmatch is Ruby's File.fnmatch without flags: * and ? match any
// character, slashes included, and [...] a set; a leading dot is matched
// only by a literal dot.
func fnmatch(pattern, name string) bool {
	if strings.HasPrefix(name, ".") && !strings.HasPrefix(pattern, ".") {
		return false
	}
	var re strings.Builder
	re.WriteString("^")
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; c {
		case '*':
			re.WriteString(".*")
		case '?':
			re.WriteString(".")
		case '[':
			j := strings.IndexByte(pattern[i:], ']')
			if j < 0 {
				re.WriteString(`\[`)
				continue
			}
			set := pattern[i+1 : i+j]
			if strings.HasPrefix(set, "!") {
				set = "^" + set[1:]
			}
			re.WriteString("[" + strings.ReplaceAll(set, `\`, `\\`) + "]")
			i += j
		case '\\':
			if i+1 < len(pattern) {
				i++
				re.WriteString(regexp.QuoteMeta(pattern[i : i+1]))
			}
		default:
			re.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	re.WriteString("$")
	ok, err := regexp.MatchString(re.String(), name)
	return err == nil && ok
}
