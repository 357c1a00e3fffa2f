package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/tickflow/tickflow/api"
)

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// The OpenAPI document must describe every /api route, and nothing that
// is not a route: a route added without its description fails here.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	s := api.New(api.Options{})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/openapi.json", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json: %d %s", rec.Code, rec.Body)
	}
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Summary    string `json:"summary"`
			Parameters []struct {
				Name     string `json:"name"`
				In       string `json:"in"`
				Required bool   `json:"required"`
			} `json:"parameters"`
			Responses map[string]any `json:"responses"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}

	routes := map[string]bool{}
	for _, r := range s.Echo().Routes() {
		path := echoParam.ReplaceAllString(r.Path, "{$1}")
		method := strings.ToLower(r.Method)
		routes[method+" "+path] = true
		if !strings.HasPrefix(r.Path, "/api/") {
			continue
		}
		op, ok := doc.Paths[path][method]
		if !ok {
			t.Errorf("route %s %s is not in the OpenAPI document. Describe it from an init() in the file that adds the route:\n"+
				"\tdescribe(%q, %q, Operation{Summary: ..., Params: []Param{PathParam(...), QueryParam(...)}, Data: <schema of data>, Errors: map[int]string{400: ...}})\n"+
				"(see the example at the top of api/openapi.go; defineSchema registers a named schema you can Ref)",
				r.Method, r.Path, r.Method, r.Path)
			continue
		}
		if op.Summary == "" {
			t.Errorf("%s %s: description has no summary", r.Method, path)
		}
		if _, ok := op.Responses["200"]; !ok {
			t.Errorf("%s %s: no 200 response described", r.Method, path)
		}
		// Every path parameter must be declared, and required.
		for _, m := range echoParam.FindAllStringSubmatch(r.Path, -1) {
			declared := false
			for _, p := range op.Parameters {
				if p.Name == m[1] && p.In == "path" && p.Required {
					declared = true
				}
			}
			if !declared {
				t.Errorf("%s %s: path parameter %q not declared (use PathParam(%q, ...))", r.Method, path, m[1], m[1])
			}
		}
	}
	var described []string
	for path, ops := range doc.Paths {
		for method := range ops {
			described = append(described, method+" "+path)
		}
	}
	sort.Strings(described)
	for _, d := range described {
		if !routes[d] {
			t.Errorf("the OpenAPI document describes %q, which is not a route: remove the describe() call or add the route", d)
		}
	}
	// Every $ref must resolve.
	for _, ref := range regexp.MustCompile(`"#/components/schemas/([^"]+)"`).FindAllStringSubmatch(rec.Body.String(), -1) {
		if _, ok := doc.Components.Schemas[ref[1]]; !ok {
			t.Errorf("$ref to undefined schema %q (register it with defineSchema)", ref[1])
		}
	}
	if len(described) < 4 {
		t.Errorf("only %d operations described: %v", len(described), described)
	}
}
