package server

import (
	"math/rand/v2"
	"time"
)

// Backoff spaces retries: Initial, multiplied by Factor after each failure up to Max, plus up to
// Jitter×delay of random extra so that many pools do not retry in lockstep. (Hand-written: the
// well-known implementation, k8s.io/apimachinery's wait.Backoff, needs k8s.io/utils, which this
// module does not otherwise pull in.)
type Backoff struct {
	Initial time.Duration
	Factor  float64
	Max     time.Duration
	Jitter  float64
}

// DefaultBackoff spaces registration retries: 100 ms doubling to 30 s, with 10 % jitter.
var DefaultBackoff = Backoff{Initial: 100 * time.Millisecond, Factor: 2, Max: 30 * time.Second, Jitter: 0.1}

// backoffState is one run of retries.
type backoffState struct {
	cfg  Backoff
	next time.Duration
}

func (b Backoff) start() *backoffState { return &backoffState{cfg: b, next: b.Initial} }

// step returns the delay before the next retry and grows the one after.
func (s *backoffState) step() time.Duration {
	d := s.next
	s.next = min(time.Duration(float64(s.next)*max(s.cfg.Factor, 1)), max(s.cfg.Max, s.cfg.Initial))
	if s.cfg.Jitter > 0 {
		d += time.Duration(rand.Float64() * s.cfg.Jitter * float64(d))
	}
	return d
}
