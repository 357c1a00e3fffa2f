// Package all compiles in every sink: main blank-imports it, so the set of
// sinks in a build is listed here and nowhere else.
package all

import (
	_ "github.com/tickflow/tickflow/sinks/cache"
	_ "github.com/tickflow/tickflow/sinks/push"
	_ "github.com/tickflow/tickflow/sinks/risk"
	_ "github.com/tickflow/tickflow/sinks/store"
	_ "github.com/tickflow/tickflow/sinks/strategy"
)
