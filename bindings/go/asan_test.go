//go:build asan

package chat

// The test binary was built with -asan: programs it builds must be too.
func init() { buildFlags = append(buildFlags, "-asan") }
