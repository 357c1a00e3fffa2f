package bus

import "syscall"

// fsFree reports the bytes available to an unprivileged writer on dir's
// filesystem (0 when it is out of inodes) and whether it is mounted read-only; ok is false when that
// cannot be told.
func fsFree(dir string) (free int64, readOnly, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false, false
	}
	const stRdonly = 1 // ST_RDONLY
	free = int64(st.Bavail) * st.Bsize
	if st.Files > 0 && st.Ffree < 64 {
		free = 0 // no inodes left: a new segment file cannot be created
	}
	return free, st.Flags&stRdonly != 0, true
}
