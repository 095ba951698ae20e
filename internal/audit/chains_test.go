package audit

import (
	"fmt"
	"strings"
	"testing"
)

// One topic, several fhirwall-proxy replicas: each writes its own chain from its own spool, and the
// shipper of each keys its entries by patient over the same partitions.

const topicParts = 3

// interleave merges the chains' messages as brokers would: in each partition, the chains' entries
// alternate (each chain keeping its own order there), offsets are renumbered, and the topic is read
// partition after partition, as ReadTopic does.
func interleave(chains ...[]Message) []Message {
	var out []Message
	for p := range topicParts {
		var queues [][]Message
		for _, c := range chains {
			var q []Message
			for _, m := range c {
				if m.Partition == p {
					q = append(q, m)
				}
			}
			queues = append(queues, q)
		}
		var off int64
		for more := true; more; {
			more = false
			for i := range queues {
				if len(queues[i]) == 0 {
					continue
				}
				m := queues[i][0]
				queues[i] = queues[i][1:]
				m.Offset = off
				off++
				out = append(out, m)
				more = true
			}
		}
	}
	return out
}

// replicas writes n records through each of k spools and returns their topics (one per chain) and heads.
func replicas(t *testing.T, k, n int) ([][]Message, []*Head) {
	t.Helper()
	var topics [][]Message
	var heads []*Head
	for range k {
		dir := spoolOf(t, n)
		topics = append(topics, topicOf(t, dir, topicParts))
		heads = append(heads, headOf(t, dir))
	}
	return topics, heads
}

func chainOf(t *testing.T, m Message) Entry {
	t.Helper()
	e, err := ParseLine(m.Value)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func wantWhole(t *testing.T, rs []Report, chains int) {
	t.Helper()
	if len(rs) != chains {
		t.Fatalf("want %d chains, got %d: %v", chains, len(rs), rs)
	}
	for _, r := range rs {
		if r.Break != nil || r.First != 1 || r.Signed == 0 {
			t.Fatalf("chain not proven whole: %s", r)
		}
	}
}

func TestTwoAndThreeInterleavedChainsEachVerifyWhole(t *testing.T) {
	for _, k := range []int{2, 3} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			topics, heads := replicas(t, k, 25+k)
			rs := VerifyChains(interleave(topics...), Keys{testPub()}, heads...)
			wantWhole(t, rs, k)
			for i, r := range rs {
				if r.Records != 25+k || r.Last != heads[i].Seq || r.Signed != heads[i].Seq || r.SignedTime.IsZero() {
					t.Fatalf("chain %d: %s (head at seq %d)", i, r, heads[i].Seq)
				}
				if r.Chain != heads[i].Chain {
					t.Fatalf("chain %d reported as %s, its head says %s", i, r.Chain, heads[i].Chain)
				}
			}
		})
	}
}

func TestAStoppedChainIsWholeUpToItsLastEntry(t *testing.T) {
	topics, heads := replicas(t, 3, 20)
	// Replica 2 died for good: its chain ends mid-way, after a checkpoint, without a stop checkpoint.
	var cut []Message
	for _, m := range topics[1] {
		if chainOf(t, m).Seq <= 15 {
			cut = append(cut, m)
		}
	}
	rs := VerifyChains(interleave(topics[0], cut, topics[2]), Keys{testPub()}, heads[0], heads[2])
	wantWhole(t, rs, 3)
	if r := rs[1]; r.Last != 15 || !strings.Contains(r.String(), "covered only by the hash chain") {
		t.Fatalf("the stopped chain: %s", r)
	}
}

func TestAGapInsideOneChainNamesItsSeqsAndTheRestStillVerify(t *testing.T) {
	topics, heads := replicas(t, 2, 30)
	var holed []Message
	for _, m := range topics[0] {
		if s := chainOf(t, m).Seq; s < 12 || s > 15 { // seq 12..15 missing, as 90344–90347 on the stack topic
			holed = append(holed, m)
		}
	}
	rs := VerifyChains(interleave(holed, topics[1]), Keys{testPub()}, heads...)
	if len(rs) != 2 || rs[1].Break != nil {
		t.Fatalf("the other chain must stay whole: %v", rs)
	}
	r := rs[0]
	wantBreak(t, r, 12, "seq 12..15 (4 entries) of chain "+heads[0].Chain+" missing")
	if r.Last != heads[0].Seq || r.Entries != int(heads[0].Seq)-4 || len(r.Breaks) != 1 {
		t.Fatalf("the walk did not go on past the gap to the head: %s", r)
	}
	// A second gap further on is named too.
	var twice []Message
	for _, m := range holed {
		if chainOf(t, m).Seq != 25 {
			twice = append(twice, m)
		}
	}
	r = VerifyChains(interleave(twice, topics[1]), Keys{testPub()}, heads...)[0]
	if len(r.Breaks) != 2 || r.Breaks[1].Seq != 25 || !strings.Contains(r.String(), "also BROKEN") {
		t.Fatalf("two gaps: %s", r)
	}
}

func TestEntriesOfAChainInDifferentPartitionsMayArriveInAnyOrder(t *testing.T) {
	topics, heads := replicas(t, 2, 30)
	// Partitions read in reverse: later seqs of a chain come before earlier ones of another partition.
	msgs := interleave(topics...)
	var reversed []Message
	for p := topicParts - 1; p >= 0; p-- {
		for _, m := range msgs {
			if m.Partition == p {
				reversed = append(reversed, m)
			}
		}
	}
	wantWhole(t, VerifyChains(reversed, Keys{testPub()}, heads...), 2)
}

func TestTwoEntriesOfAChainSwappedInOnePartitionAreABreak(t *testing.T) {
	topics, heads := replicas(t, 2, 30)
	msgs := interleave(topics...)
	want := heads[1].Chain
	var i, j = -1, -1
	for a := range msgs {
		if chainOf(t, msgs[a]).Chain != want || chainOf(t, msgs[a]).Seq < 5 {
			continue
		}
		for b := a + 1; b < len(msgs); b++ {
			if msgs[b].Partition == msgs[a].Partition && chainOf(t, msgs[b]).Chain == want {
				i, j = a, b
				break
			}
		}
		if i >= 0 {
			break
		}
	}
	msgs[i].Value, msgs[j].Value = msgs[j].Value, msgs[i].Value
	rs := VerifyChains(msgs, Keys{testPub()}, heads...)
	if rs[0].Break != nil {
		t.Fatalf("the other chain: %s", rs[0])
	}
	wantBreak(t, rs[1], 0, "reordered")
}
