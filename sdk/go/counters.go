package dativo

import (
	"math"
	"sync"
)

// Counters are the counts a plugin keeps of what it met (invalid values read as null, records rejected …).
// The host shows the totals of the attempt that committed in the run report, under "counters" for the
// plugin's side. Add is safe to call from several streams at once; a nil *Counters counts nothing.
//
// Names are 1-100 letters, digits and _ . : / - (starting with a letter or digit), counts non-negative;
// the host keeps at most 100 names per side and drops, with a warning in the report, what is neither.
type Counters struct {
	mu     sync.Mutex
	values map[string]int64
}

// Add adds n to the counter name (a total stops at the largest int64).
func (c *Counters) Add(name string, n int64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.values == nil {
		c.values = map[string]int64{}
	}
	total := c.values[name]
	if n > 0 && total > math.MaxInt64-n {
		total = math.MaxInt64
	} else {
		total += n
	}
	c.values[name] = total
}

// Snapshot returns the counts so far, by name.
func (c *Counters) Snapshot() map[string]int64 {
	out := map[string]int64{}
	if c == nil {
		return out
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, n := range c.values {
		out[name] = n
	}
	return out
}
