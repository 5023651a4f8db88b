package dativo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Emit hands one record batch to the stream; it blocks until the consumer is ready for it and
// returns an error once the consumer has gone (stop producing then). The stream takes ownership of
// the batch: do not release it.
type Emit func(batch arrow.RecordBatch) error

// Stream returns a RecordReader whose batches come from produce, run in its own goroutine. The
// reader keeps at most one batch ready ahead of the consumer, so producing (decoding rows, say) and
// consuming (sending over Flight) overlap while memory stays bounded. produce's error, or a panic in
// it, becomes the reader's Err. Releasing the reader early cancels produce's context.
func Stream(ctx context.Context, schema *arrow.Schema, produce func(ctx context.Context, emit Emit) error) array.RecordReader {
	ctx, cancel := context.WithCancel(ctx)
	s := &stream{schema: schema, batches: make(chan arrow.RecordBatch, 1), cancel: cancel, refs: 1}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		defer close(s.batches)
		defer func() {
			if value := recover(); value != nil {
				s.err = recovered("a stream producer", value)
			}
		}()
		emit := func(batch arrow.RecordBatch) error {
			if !batch.Schema().Equal(schema) {
				batch.Release()
				return SchemaMismatch(fmt.Sprintf("a batch has schema %s, the stream declared %s", batch.Schema(), schema), "")
			}
			select {
			case s.batches <- batch:
				return nil
			case <-ctx.Done():
				batch.Release()
				return ctx.Err()
			}
		}
		// A cancelled producer is an error too: a stream cut short must never look complete.
		if err := produce(ctx, emit); err != nil {
			s.err = err
		}
	}()
	return s
}

type stream struct {
	schema  *arrow.Schema
	batches chan arrow.RecordBatch
	current arrow.RecordBatch
	cancel  context.CancelFunc
	done    sync.WaitGroup
	err     error // written by the producer before it closes batches
	refs    int64
}

func (s *stream) Schema() *arrow.Schema { return s.schema }

func (s *stream) Next() bool {
	if s.current != nil {
		s.current.Release()
		s.current = nil
	}
	batch, ok := <-s.batches
	if !ok {
		return false
	}
	s.current = batch
	return true
}

func (s *stream) RecordBatch() arrow.RecordBatch { return s.current }

// Record is RecordBatch (the name older arrow-go code calls).
func (s *stream) Record() arrow.RecordBatch { return s.current }

// Err is valid once Next has returned false.
func (s *stream) Err() error { return s.err }

func (s *stream) Retain() { atomic.AddInt64(&s.refs, 1) }

func (s *stream) Release() {
	if atomic.AddInt64(&s.refs, -1) != 0 {
		return
	}
	s.cancel()
	for batch := range s.batches { // unblock and drain the producer
		batch.Release()
	}
	s.done.Wait()
	if s.current != nil {
		s.current.Release()
		s.current = nil
	}
}
