package dativo

import (
	"encoding/json"
	"math"
	"runtime/debug"
	"testing"
)

// resetMemoryLimit lets a test see the limit it sets, and restores the process's limit afterwards.
func resetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	percent := debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	memoryLimit.Lock()
	memoryLimit.set = 0
	memoryLimit.Unlock()
	t.Cleanup(func() {
		debug.SetMemoryLimit(before)
		debug.SetGCPercent(percent)
		memoryLimit.Lock()
		memoryLimit.set = 0
		memoryLimit.Unlock()
	})
}

func TestConfigureMakesTheBudgetTheSoftMemoryLimit(t *testing.T) {
	resetMemoryLimit(t)
	t.Setenv("GOMEMLIMIT", "")
	debug.SetMemoryLimit(math.MaxInt64)
	h := start(t, &fake{})
	configure := func(budget int64) {
		if e := h.action("configure", map[string]any{
			"role": RoleReader, "options": json.RawMessage(`{}`), "settings": map[string]any{"path": "x"},
			"context": map[string]any{"job": "j", "run_id": "r1", "parallelism": 2, "memory_bytes": budget,
				"batch_bytes": 4 << 20},
		}, nil); e != nil {
			t.Fatal(e)
		}
	}
	t.Setenv("GOGC", "")
	configure(300 << 20)
	if got := debug.SetMemoryLimit(-1); got != 150<<20 {
		t.Fatalf("limit %d after configure, want half the budget, %d", got, 150<<20)
	}
	if got := debug.SetGCPercent(budgetGCPercent); got != budgetGCPercent {
		t.Fatalf("GOGC %d after configure, want %d", got, budgetGCPercent)
	}
	configure(100 << 20) // another role of the same process: the larger budget stays
	if got := debug.SetMemoryLimit(-1); got != 150<<20 {
		t.Fatalf("limit %d after a smaller budget, want %d", got, 150<<20)
	}
}

func TestGOMEMLIMITWinsOverTheBudget(t *testing.T) {
	resetMemoryLimit(t)
	t.Setenv("GOMEMLIMIT", "1GiB")
	debug.SetMemoryLimit(math.MaxInt64)
	limitMemory(300 << 20)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit %d, want it left alone", got)
	}
}

func TestGOGCWinsOverTheBudgetsCollectorTarget(t *testing.T) {
	resetMemoryLimit(t)
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200)
	limitMemory(300 << 20)
	if got := debug.SetGCPercent(200); got != 200 {
		t.Fatalf("GOGC %d, want the environment's 200", got)
	}
}
