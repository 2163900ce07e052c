package api

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/spugate/spugate/internal/unixrpc"
)

// DefaultSocket is where spud listens unless told otherwise.
const DefaultSocket = "/run/spugate/spud.sock"

// Client is a connection to spud's SA API: the RPC client (Call, Subscribe,
// Done, Close, Timeout) with a typed method per operation. Calls may be
// made from several goroutines. A refusal of spud's reads "spud: op: why"
// and has a *unixrpc.Error in its chain; a lost connection has
// unixrpc.ErrClosed.
type Client struct {
	*unixrpc.Client
	// jsonChild: spud refused child.add in the packed encoding (it is
	// older than it); child.add on this connection is sent in JSON.
	jsonChild atomic.Bool
	// dumpFallback counts the encodings of sa.dump spud refused (it is
	// older than them): 0 asks for EncodingPackedData, 1 for
	// EncodingPacked, 2 for JSON, on this connection from then on.
	dumpFallback atomic.Int32
	// jsonStats: spud refused sa.stats in the packed encoding.
	jsonStats atomic.Bool
}

// dumpEncodings are what sa.dump asks for, by dumpFallback.
var dumpEncodings = [...]string{EncodingPackedData, EncodingPacked, ""}

// Dial connects to the SA API at path.
func Dial(path string) (*Client, error) {
	c, err := unixrpc.Dial("spud", path)
	if err != nil {
		return nil, err
	}
	return &Client{Client: c}, nil
}

// Hello opens the session, client naming this side in spud's log, and
// checks that spud speaks this version of the API.
func (c *Client) Hello(client string) (*HelloReply, error) {
	var r HelloReply
	if err := c.Call(OpHello, HelloRequest{Client: client}, &r); err != nil {
		return nil, err
	}
	if r.Version != Version {
		return nil, fmt.Errorf("api: spud speaks version %d, we speak %d", r.Version, Version)
	}
	return &r, nil
}

// AllocSPI reserves an inbound SPI anchored on the tunnel req names.
func (c *Client) AllocSPI(req SPIAllocRequest) (SPIAllocReply, error) {
	var r SPIAllocReply
	err := c.Call(OpSPIAlloc, req, &r)
	return r, err
}

// ErrNoSPIBlocks is AllocSPIs' answer when spud is older than blocks of
// SPIs: nothing was reserved, and the caller asks for one SPI at a time
// (AllocSPI).
var ErrNoSPIBlocks = errors.New("spud grants no blocks of SPIs (spi.alloc count)")

// AllocSPIs reserves a block of n inbound SPIs (1..MaxSPIBlock) anchored
// as req asks, in one call; see SPIBlockUse for how long they may be
// handed out. A spud older than blocks refuses the request, which comes
// back as ErrNoSPIBlocks.
func (c *Client) AllocSPIs(req SPIAllocRequest, n int) ([]uint32, error) {
	req.Count = n
	var r SPIAllocReply
	err := c.Call(OpSPIAlloc, req, &r)
	var e *unixrpc.Error
	if errors.As(err, &e) && e.Code == unixrpc.CodeBadRequest && strings.Contains(e.Message, `unknown field "count"`) {
		return nil, fmt.Errorf("%w: %w", ErrNoSPIBlocks, err)
	}
	if err != nil {
		return nil, err
	}
	if len(r.SPIs) != n || r.SPIs[0] != r.SPI {
		return nil, fmt.Errorf("spud: %s: a block of %d SPIs asked, %d granted", OpSPIAlloc, n, len(r.SPIs))
	}
	return r.SPIs, nil
}

// AddSA installs an SA.
func (c *Client) AddSA(sa *SA) error { return c.Call(OpSAAdd, sa, nil) }

// UpdateSA changes a live SA's peer address, encapsulation or lifetimes.
func (c *Client) UpdateSA(u *SAUpdate) error { return c.Call(OpSAUpdate, u, nil) }

// DelSA removes an SA.
func (c *Client) DelSA(id SAID) error { return c.Call(OpSADel, id, nil) }

// DelPolicy removes a policy.
func (c *Client) DelPolicy(id uint32) error { return c.Call(OpPolicyDel, PolicyID{ID: id}, nil) }

// SetSPUMap sets the logical -> physical SPU map wholesale.
func (c *Client) SetSPUMap(m []int) error { return c.Call(OpSPUMapSet, SPUMap{Map: m}, nil) }

// DumpSAs lists the installed SAs, fetching every page (see SAPages for
// the entries added or deleted meanwhile). keys:true is refused: spud has
// no key material to give.
//
// The SAs spud could not read (Incomplete) are left out without an
// error: iked's resync and sweep, its callers, act on what is listed
// and leave alone what is not.
func (c *Client) DumpSAs(keys bool) ([]SAState, error) {
	var all []SAState
	for page, err := range c.saPages(DumpRequest{Keys: keys}) {
		var inc *Incomplete
		if errors.As(err, &inc) {
			break
		}
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
	}
	return all, nil
}

// Incomplete is the error SAPages yields last when spud could not read
// some of the SAs it holds (SADump.Missing): every page came, without
// them.
type Incomplete struct {
	Missing int    // how many
	Reason  string // why, as spud said it (the last page's reason)
}

// Error names the command, how many SAs were not listed and why.
func (e *Incomplete) Error() string {
	return fmt.Sprintf("spud: %s: %d SAs not listed: %s", OpSADump, e.Missing, e.Reason)
}

// SAPage fetches one page of the SAs: req.After is the previous page's
// Next (0 for the first), req.Limit the most SAs wanted (0: MaxPage, or
// MaxPackedPage with req.Encoding EncodingPacked). A packed page comes
// back decoded, in SAs.
func (c *Client) SAPage(req DumpRequest) (*SADump, error) {
	var r SADump
	data, err := c.CallData(OpSADump, req, &r)
	if err != nil {
		return &r, err
	}
	if req.Encoding == EncodingPackedData {
		r.Packed = data
	}
	if len(r.Packed) > 0 {
		// The frame's buffer (or base64's), which nothing else holds.
		sas, err := decodePage(r.Packed, make([]SAState, 0, req.Limit), true)
		if err != nil {
			return &r, fmt.Errorf("spud: %s: %w", OpSADump, err)
		}
		r.SAs, r.Packed = sas, nil
	}
	return &r, nil
}

// SAPages yields the installed SAs page by page, up to limit a page (0:
// MaxPackedPage), for callers that print or process them as they come; an
// error is yielded last, an *Incomplete after every page when spud could
// not read some SAs. An SA installed during the whole iteration comes
// exactly once; one added or deleted meanwhile may or may not come. The
// next page is asked for while the caller takes one.
func (c *Client) SAPages(limit int) iter.Seq2[[]SAState, error] {
	return c.saPages(DumpRequest{Limit: limit})
}

func (c *Client) saPages(req DumpRequest) iter.Seq2[[]SAState, error] {
	return func(yield func([]SAState, error) bool) {
		get := func(req DumpRequest) (*SADump, error) {
			for {
				f := c.dumpFallback.Load()
				if !req.Keys {
					req.Encoding = dumpEncodings[f]
				}
				r, err := c.SAPage(req)
				if err != nil && req.Encoding != "" && olderSpud(err) {
					// A spud older than the encoding: the one before
					// it then, on this connection for good.
					c.dumpFallback.CompareAndSwap(f, f+1)
					continue
				}
				return r, err
			}
		}
		var missing Incomplete
		for page, err := range prefetch(req, get, func(r *SADump) ([]SAState, uint64, bool) {
			if r.Missing > 0 {
				missing.Missing += r.Missing
				missing.Reason = r.MissingReason
			}
			return r.SAs, r.Next, r.More
		}) {
			if !yield(page, err) || err != nil {
				return
			}
		}
		if missing.Missing > 0 {
			yield(nil, &missing)
		}
	}
}

// olderSpud reports whether err is a spud's refusal of the request's
// encoding: a field it does not know, or a value.
func olderSpud(err error) bool {
	var e *unixrpc.Error
	return errors.As(err, &e) && e.Code == unixrpc.CodeBadRequest &&
		(strings.Contains(e.Message, `unknown field "encoding"`) || strings.Contains(e.Message, "encoding") && strings.Contains(e.Message, "not known"))
}

// SAStats returns the counters of the SAs ids names (outbound ones with
// their remote), in the order named, Found false for those that are not
// installed. More than MaxQuery SAs take several requests, in the packed
// encoding (SAStatsRequest.Packed) unless spud is older than it.
func (c *Client) SAStats(ids []SAID) ([]SAStatsEntry, error) {
	return c.SAStatsTo(nil, ids)
}

// SAStatsTo is SAStats answering in out's array when it has room (its
// entries overwritten), for a caller that asks page after page: iked's
// list-sas, whose answers at a million Child SAs were a tenth of what a
// listing left iked's collector.
func (c *Client) SAStatsTo(out []SAStatsEntry, ids []SAID) ([]SAStatsEntry, error) {
	out = slices.Grow(out[:0], len(ids))[:len(ids)]
	for i, id := range ids {
		out[i] = SAStatsEntry{SAID: id}
	}
	buf := make([]byte, 0, 12*min(len(ids), MaxQuery))
	for done := 0; done < len(ids); {
		n := min(len(ids)-done, MaxQuery)
		if !c.jsonStats.Load() {
			buf = buf[:0]
			for _, id := range ids[done : done+n] {
				buf = AppendPackedSAID(buf, id)
			}
			data, err := c.CallData(OpSAStats, SAStatsRequest{Packed: buf}, nil)
			if err == nil {
				if err := DecodePackedStats(data, out[done:done+n]); err != nil {
					return nil, fmt.Errorf("spud: %s: %w", OpSAStats, err)
				}
				done += n
				continue
			}
			var e *unixrpc.Error
			if !errors.As(err, &e) || e.Code != unixrpc.CodeBadRequest || !strings.Contains(e.Message, `unknown field "packed"`) {
				return nil, err
			}
			c.jsonStats.Store(true)
		}
		var r SAStatsReply
		if err := c.Call(OpSAStats, SAStatsRequest{SAs: ids[done : done+n]}, &r); err != nil {
			return nil, err
		}
		if len(r.SAs) != n {
			return nil, fmt.Errorf("spud: %s: %d answers to %d SAs", OpSAStats, len(r.SAs), n)
		}
		copy(out[done:], r.SAs)
		done += n
	}
	return out, nil
}

// pages iterates the pages of a paged dump: op with req, its reply R
// giving the page's entries, the next cursor and whether more follow.
func pages[R any, T any](c *Client, op string, req DumpRequest, get func(*R) ([]T, uint64, bool)) iter.Seq2[[]T, error] {
	return prefetch(req, func(req DumpRequest) (*R, error) {
		var r R
		err := c.Call(op, req, &r)
		return &r, err
	}, get)
}

// prefetch iterates the pages that call fetches, each asked for (with
// After the cursor of the one before) while the caller takes the one
// before: listing a million SAs, spud's page building and the client's
// printing then overlap rather than take turns.
func prefetch[R any, T any](req DumpRequest, call func(DumpRequest) (*R, error), get func(*R) ([]T, uint64, bool)) iter.Seq2[[]T, error] {
	type fetched struct {
		r   *R
		err error
	}
	fetch := func(req DumpRequest) <-chan fetched {
		// Buffered: a caller that stops early leaves the call to finish
		// on its own.
		ch := make(chan fetched, 1)
		go func() {
			r, err := call(req)
			ch <- fetched{r, err}
		}()
		return ch
	}
	return func(yield func([]T, error) bool) {
		next := fetch(req)
		for {
			f := <-next
			if f.err != nil {
				yield(nil, f.err)
				return
			}
			entries, cursor, more := get(f.r)
			if more && cursor <= req.After {
				// A server that keeps answering the same page would
				// keep a caller here for ever.
				yield(nil, fmt.Errorf("spud: the page after %d says more but gives no later cursor (%d)", req.After, cursor))
				return
			}
			if more {
				req.After = cursor
				next = fetch(req)
			}
			if !yield(entries, nil) || !more {
				return
			}
		}
	}
}

// AddPolicy installs a policy; the reply gives its id and anchor.
func (c *Client) AddPolicy(p *Policy) (PolicyAddReply, error) {
	var r PolicyAddReply
	err := c.Call(OpPolicyAdd, p, &r)
	return r, err
}

// AddChild installs a Child SA's SAs and policy in one request (child.add),
// all or nothing, in the packed encoding (PackedRequest), or in JSON on a
// connection whose spud refused that. A spud older than child.add refuses
// it with CodeBadRequest "unknown operation" (UnknownOp tells).
func (c *Client) AddChild(req *ChildAdd) (ChildAddReply, error) {
	var r ChildAddReply
	if !c.jsonChild.Load() {
		err := c.Call(OpChildAdd, PackedRequest{Packed: AppendPackedChildAdd(nil, req)}, &r)
		var e *unixrpc.Error
		if !errors.As(err, &e) || e.Code != unixrpc.CodeBadRequest || !strings.Contains(e.Message, `unknown field "packed"`) {
			return r, err
		}
		c.jsonChild.Store(true)
	}
	err := c.Call(OpChildAdd, req, &r)
	return r, err
}

// DelChild removes a Child SA's policies and SAs in one request
// (child.del).
func (c *Client) DelChild(req *ChildDel) error { return c.Call(OpChildDel, req, nil) }

// UnknownOp reports whether err is spud's refusal of op as an operation
// it does not know: a spud older than op.
func UnknownOp(err error, op string) bool {
	var e *unixrpc.Error
	return errors.As(err, &e) && e.Code == unixrpc.CodeBadRequest && e.Message == fmt.Sprintf("unknown operation %q", op)
}

// DumpPolicies lists the installed policies with their counters,
// fetching every page.
func (c *Client) DumpPolicies() ([]PolicyState, error) {
	var all []PolicyState
	for page, err := range c.PolicyPages(0) {
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
	}
	return all, nil
}

// PolicyPages yields the installed policies page by page, as SAPages.
func (c *Client) PolicyPages(limit int) iter.Seq2[[]PolicyState, error] {
	return pages(c, OpPolicyDump, DumpRequest{Limit: limit}, func(r *PolicyDump) ([]PolicyState, uint64, bool) {
		return r.Policies, r.Next, r.More
	})
}

// Stats returns the data plane's counters.
func (c *Client) Stats() (*Stats, error) {
	var r Stats
	err := c.Call(OpStats, nil, &r)
	return &r, err
}

// SPUs lists the physical SPUs and the logical -> physical map.
func (c *Client) SPUs() (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUList, nil, &r)
	return &r, err
}

// DrainSPU takes SPU id out of service, moving its logical SPUs away.
func (c *Client) DrainSPU(id int) (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUDrain, SPURequest{ID: id}, &r)
	return &r, err
}

// AddSPU puts a drained SPU id back in service.
func (c *Client) AddSPU(id int) (*SPUList, error) {
	var r SPUList
	err := c.Call(OpSPUAdd, SPURequest{ID: id}, &r)
	return &r, err
}

// FailSPU makes SPU id panic (fault injection, for tests).
func (c *Client) FailSPU(id int) error { return c.Call(OpSPUFail, SPURequest{ID: id}, nil) }
