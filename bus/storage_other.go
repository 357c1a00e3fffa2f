//go:build !linux

package bus

// fsFree cannot tell on this platform; only failed writes are seen.
func fsFree(string) (int64, bool, bool) { return 0, false, false }
