package dativo

import (
	"os"
	"runtime/debug"
	"sync"
)

var memoryLimit struct {
	sync.Mutex
	set int64
}

// limitMemory makes the job's memory budget the runtime's soft memory limit, so that the garbage collector
// runs before the heap outgrows it (by default the heap may grow to twice what is live). A GOMEMLIMIT the
// plugin was started with wins; a process configured for several roles keeps the largest budget.
func limitMemory(budget int64) {
	if budget <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	memoryLimit.Lock()
	defer memoryLimit.Unlock()
	if budget > memoryLimit.set {
		memoryLimit.set = budget
		debug.SetMemoryLimit(budget)
	}
}
