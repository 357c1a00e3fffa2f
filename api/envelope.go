package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
)

// The JSON envelope of the seed:
//   {"success":true,"data":...}
//   {"success":false,"error":{"code":"...","message":"..."}}

type envelope struct {
	Success bool      `json:"success"`
	Data    any       `json:"data,omitempty"`
	Error   *apiError `json:"error,omitempty"`
}

// apiError is an error with an HTTP status and a stable machine-readable code.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Details carries structured context (which layers failed, say).
	Details any `json:"details,omitempty"`
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, msg string) *apiError {
	return &apiError{Status: status, Code: code, Message: msg}
}

func ok(c echo.Context, data any) error {
	return c.JSON(http.StatusOK, envelope{Success: true, Data: data})
}

// errorHandler turns every error a handler returns into the envelope, so no
// client mistake ever surfaces as a bare 500 or echo's own error shape.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &he):
		code := "http_error"
		switch he.Code {
		case http.StatusNotFound:
			code = "not_found"
		case http.StatusMethodNotAllowed:
			code = "method_not_allowed"
		case http.StatusBadRequest:
			code = "bad_request"
		}
		msg := http.StatusText(he.Code)
		if m, ok := he.Message.(string); ok {
			msg = m
		}
		ae = &apiError{Status: he.Code, Code: code, Message: msg}
	default:
		s.log.Error("api: internal error", "path", c.Path(), "err", err)
		ae = &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	if err := c.JSON(ae.Status, envelope{Success: false, Error: ae}); err != nil {
		s.log.Debug("api: write error response", "err", err)
	}
}
