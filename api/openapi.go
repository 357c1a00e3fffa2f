package api

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
)

// The OpenAPI 3 description of the API is assembled from per-file
// registrations, like the routes: a file that adds a route describes it
// from its own init() with describe(), and any schema it needs with
// defineSchema(). TestOpenAPIDescribesEveryRoute fails for a route that is
// not described, and for a description without a route.
//
//	func init() {
//		addRoutes(func(s *Server) { s.e.GET("/api/v1/candles/:exchange/:symbol", s.getCandles) })
//		defineSchema("Candle", Schema{"type": "object", ...})
//		describe("GET", "/api/v1/candles/:exchange/:symbol", Operation{
//			Summary: "OHLC candles", Tags: []string{"history"},
//			Params:  []Param{PathParam("exchange", "..."), PathParam("symbol", "..."), QueryParam("interval", "...", Schema{"type": "string"})},
//			Data:    ArrayOf(Ref("Candle")),
//			Errors:  map[int]string{400: "bad interval or time bounds", 503: "the store is unavailable"},
//		})
//	}

// Schema is a JSON Schema object as OpenAPI 3.0 uses it.
type Schema map[string]any

// Ref points at a schema registered with defineSchema.
func Ref(name string) Schema { return Schema{"$ref": "#/components/schemas/" + name} }

// ArrayOf is an array of items.
func ArrayOf(items Schema) Schema { return Schema{"type": "array", "items": items} }

// Param is one path or query parameter.
type Param struct {
	Name        string
	In          string // "path" or "query"
	Description string
	Required    bool
	Schema      Schema
}

// PathParam is a required string path parameter.
func PathParam(name, description string) Param {
	return Param{Name: name, In: "path", Description: description, Required: true, Schema: Schema{"type": "string"}}
}

// QueryParam is an optional query parameter.
func QueryParam(name, description string, schema Schema) Param {
	return Param{Name: name, In: "query", Description: description, Schema: schema}
}

// Operation describes one method on one path.
type Operation struct {
	Summary     string
	Description string
	Tags        []string
	Params      []Param
	// Data is the schema of the envelope's "data" on success (200). Nil
	// for an endpoint that does not use the envelope; then Raw describes
	// the 200 body.
	Data Schema
	Raw  *RawResponse
	// Errors maps each error status the operation can answer to when it
	// does; each is described with the error envelope.
	Errors map[int]string
}

// RawResponse is a 200 body outside the envelope (health, metrics).
type RawResponse struct {
	ContentType string
	Schema      Schema
}

var (
	docMu      sync.Mutex
	operations = map[string]map[string]Operation{} // echo path -> lower-case method -> op
	schemas    = map[string]Schema{}
)

// describe registers the description of method on path, written the way
// echo routes are (":param"). Describing one twice is a programming error.
func describe(method, path string, op Operation) {
	docMu.Lock()
	defer docMu.Unlock()
	m := strings.ToLower(method)
	if operations[path] == nil {
		operations[path] = map[string]Operation{}
	}
	if _, dup := operations[path][m]; dup {
		panic("api: " + method + " " + path + " described twice")
	}
	operations[path][m] = op
}

// defineSchema registers a named schema under components/schemas.
func defineSchema(name string, s Schema) {
	docMu.Lock()
	defer docMu.Unlock()
	if _, dup := schemas[name]; dup {
		panic("api: schema " + name + " defined twice")
	}
	schemas[name] = s
}

var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// openAPIPath turns "/a/:b" into "/a/{b}".
func openAPIPath(echoPath string) string { return echoParam.ReplaceAllString(echoPath, "{$1}") }

// openAPIDocument assembles the document from every registration.
func openAPIDocument() map[string]any {
	docMu.Lock()
	defer docMu.Unlock()
	paths := map[string]any{}
	for p, ops := range operations {
		item := map[string]any{}
		for m, op := range ops {
			item[m] = op.render()
		}
		paths[openAPIPath(p)] = item
	}
	comps := map[string]any{}
	for n, s := range schemas {
		comps[n] = s
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "tickflow API",
			"version": "1",
			"description": "Market data from exchange WebSocket feeds. Every /api response is a JSON envelope: " +
				`{"success":true,"data":...} or {"success":false,"error":{"code":"...","message":"..."}}. ` +
				"Prices and sizes are decimal strings, exact as the exchange sent them; times are Unix milliseconds.",
		},
		"paths":      paths,
		"components": map[string]any{"schemas": comps},
	}
}

func (op Operation) render() map[string]any {
	out := map[string]any{"summary": op.Summary, "responses": op.responses()}
	if op.Description != "" {
		out["description"] = op.Description
	}
	if len(op.Tags) > 0 {
		out["tags"] = op.Tags
	}
	if len(op.Params) > 0 {
		ps := make([]map[string]any, len(op.Params))
		for i, p := range op.Params {
			ps[i] = map[string]any{"name": p.Name, "in": p.In, "required": p.Required, "schema": p.Schema}
			if p.Description != "" {
				ps[i]["description"] = p.Description
			}
		}
		out["parameters"] = ps
	}
	return out
}

func (op Operation) responses() map[string]any {
	rs := map[string]any{}
	switch {
	case op.Raw != nil:
		rs["200"] = map[string]any{"description": "OK", "content": map[string]any{op.Raw.ContentType: map[string]any{"schema": op.Raw.Schema}}}
	default:
		data := op.Data
		if data == nil {
			data = Schema{}
		}
		rs["200"] = map[string]any{"description": "OK", "content": jsonContent(Schema{
			"type":     "object",
			"required": []string{"success", "data"},
			"properties": map[string]any{
				"success": Schema{"type": "boolean", "enum": []bool{true}},
				"data":    data,
			},
		})}
	}
	codes := make([]int, 0, len(op.Errors))
	for c := range op.Errors {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	for _, c := range codes {
		rs[strconv.Itoa(c)] = map[string]any{"description": op.Errors[c], "content": jsonContent(Ref("ErrorEnvelope"))}
	}
	return rs
}

func jsonContent(s Schema) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": s}}
}

func init() {
	defineSchema("ErrorEnvelope", Schema{
		"type":     "object",
		"required": []string{"success", "error"},
		"properties": map[string]any{
			"success": Schema{"type": "boolean", "enum": []bool{false}},
			"error": Schema{
				"type":     "object",
				"required": []string{"code", "message"},
				"properties": map[string]any{
					"code":    Schema{"type": "string", "description": "stable machine-readable code, e.g. invalid_limit, pair_not_found, unavailable"},
					"message": Schema{"type": "string"},
					"details": Schema{"description": "structured context; for 503 unavailable, {layers: [{layer, error}]}"},
				},
			},
		},
	})
	addRoutes(func(s *Server) {
		var (
			once sync.Once
			body []byte
			err  error
		)
		s.e.GET("/api/v1/openapi.json", func(c echo.Context) error {
			once.Do(func() { body, err = json.MarshalIndent(openAPIDocument(), "", "  ") })
			if err != nil {
				return err
			}
			return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, body)
		})
	})
	describe("GET", "/api/v1/openapi.json", Operation{
		Summary: "This document",
		Tags:    []string{"meta"},
		Raw:     &RawResponse{ContentType: "application/json", Schema: Schema{"type": "object", "description": "an OpenAPI 3.0 document"}},
	})
	describe("GET", "/healthz", Operation{
		Summary: "Liveness: the process is serving",
		Tags:    []string{"meta"},
		Raw:     &RawResponse{ContentType: "application/json", Schema: Schema{"type": "object", "properties": map[string]any{"status": Schema{"type": "string"}}}},
	})
	describe("GET", "/readyz", Operation{
		Summary:     "Readiness of every component",
		Description: "503 (same body) when a required component is not ready.",
		Tags:        []string{"meta"},
		Raw: &RawResponse{ContentType: "application/json", Schema: Schema{"type": "object", "properties": map[string]any{
			"ready":      Schema{"type": "boolean"},
			"components": ArrayOf(Schema{"type": "object"}),
		}}},
	})
}
