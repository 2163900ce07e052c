// Package xsk is spugate's AF_XDP layer: one socket per (interface, rx
// queue), each with its own UMEM, driven in batches by the SPU that owns the
// queue.
//
// # API
//
// Open binds a Socket; FD goes into the steering program's XSKMAP. The
// data path is the Port interface, which xsktest fakes:
//
//	n := port.Receive(frames)      // non-blocking; frames[:n] are lent to the caller
//	port.Release(frames[:n])       // back to the fill ring
//	n = port.Alloc(frames)         // free chunks to build packets in
//	q := port.Transmit(frames[:n]) // frames[:q] now belong to the port; any chunk of its UMEM, received ones included
//	port.Complete()                // reap transmitted chunks
//
// Every call takes a batch (BatchSize is the ideal size), touches the shared
// rings once, and allocates nothing. Waiter sleeps in poll(2) on several
// ports (and extra descriptors, such as an eventfd for hand-offs between
// SPUs); Poller turns that into the busy and adaptive polling modes.
//
// # Frame layout
//
// A Frame is the whole chunk (Buf, FrameSize bytes: 2048 or 4096) plus the
// offset and length of the packet in it. Measured on Linux 6.18 with veth,
// copy mode, native and generic XDP alike: a received packet starts at
// Config.Headroom + XDP_PACKET_HEADROOM (256) into its chunk (Info.RxOffset;
// 256 by default, 320 with Headroom 64), and the metadata an XDP program
// adds with bpf_xdp_adjust_meta(-n) is the n bytes just before it (Frame.Meta;
// copy mode copies data_meta..data_end into the chunk); the rest of the
// headroom holds whatever the chunk held before.
// The 256 bytes of headroom are where encapsulation grows the packet in
// place (Frame.Prepend: outer IP + UDP + ESP + IV + Ethernet is about 100
// bytes), after the metadata has been read. Zero-copy drivers use the same
// layout (the driver's XDP runs on the chunk itself). For transmission a
// packet may be anywhere in a chunk; Alloc offers it at RxOffset so that it
// can be grown the same way.
//
// # Ownership
//
// A Socket (and each Port) belongs to one goroutine: RX and TX share one
// free-frame stack, and the rings are single-producer single-consumer. Only
// Stats (and Info) may be called from other goroutines. A frame goes back to
// the port it came from, exactly once; frames handed back twice, or frames
// of another UMEM, are counted in Stats.BadFrames and dropped, never a
// panic. There is no shared UMEM between sockets, so forwarding from one
// interface to another copies the frame once (Alloc on the egress port,
// copy, Transmit, Release the ingress frame): cheap next to the AEAD.
//
// # asavie/xdp v0.3.3, and why the data path is ours
//
// The design card names github.com/asavie/xdp v0.3.3. Reading its xdp.go
// and measuring showed that none of its socket code could be used as is:
//
//   - Close does not unmap the four rings; each mapping holds a reference to
//     the socket, so the queue stays bound until the process exits (a second
//     NewSocket on it fails with EBUSY; TestPrivilegedReopen shows it). The
//     fill and completion rings cannot be mapped again once the socket is
//     bound (the kernel hands them to the pool), so a wrapper cannot reach
//     the fill ring's need_wakeup flag either without reading asavie's
//     private fields. Open therefore does the setup itself with
//     golang.org/x/sys/unix (socket, UMEM registration, ring sizes, mmap of
//     the rings at the XDP_MMAP_OFFSETS offsets, bind), and Close unmaps
//     everything; Open also retries the EBUSY of a queue whose previous
//     socket the kernel is still releasing (Config.BindTimeout).
//   - UMEM headroom is fixed at 0 and bind flags come from the
//     package-level xdp.DefaultSocketFlags (racy between sockets): Config
//     carries both per socket.
//   - No need_wakeup, a sendto on every Transmit: we bind with
//     XDP_USE_NEED_WAKEUP (unless Config.NoNeedWakeup) and kick only when
//     the tx ring's flag asks (always, in copy mode, where the sendto is what
//     transmits), or on every Transmit without it. An empty Receive with the
//     fill ring's flag set makes the recvfrom a stopped zero-copy driver
//     waits for. Copy mode sends only 32 frames per sendto by default: Open
//     raises that to the ring size with XDP_MAX_TX_SKB_BUDGET (Linux 6.17+),
//     and a kick loops on EAGAIN while frames remain.
//   - Transmit panics on errno values other than EINTR, EAGAIN and EBUSY
//     (ENETDOWN when the link is down, ENOBUFS...): our kick counts them in
//     Stats.KickErrors and leaves the frames on the ring for the next kick.
//   - GetDescs scans every frame on each call: we keep an O(1) free stack,
//     plus a state byte per chunk to catch frames handed back wrongly.
//   - Memory fences are commented out: our rings read the kernel's index
//     with an atomic load and publish ours with an atomic store (Go's
//     sync/atomic is sequentially consistent, stronger than the
//     acquire/release the ring protocol needs), once per batch.
//   - Poll stalls on veth: asavie polls only for events it thinks pending
//     and returns at once otherwise. Waiter polls for POLLIN with a timeout
//     (ppoll, resumed after EINTR), after PrepareWait has kicked pending
//     transmissions; with need_wakeup, poll(2) on an AF_XDP socket also
//     wakes a zero-copy driver that asked for it and drives copy-mode
//     transmission.
//
// What remains of asavie is its redirect-everything XDP program
// (xdp.NewProgram, Attach, Register), which works with these sockets and is
// used in the tests; spugate's own steering program lives in
// dataplane/steer.
//
// # Modes
//
// Open with Auto tries zero-copy and falls back to copy mode; ZeroCopy fails
// with ErrZeroCopy on drivers without it (veth: EOPNOTSUPP); Info.ZeroCopy
// says what the socket got. veth has copy mode only, with native XDP or
// generic XDP. In generic mode a veth delivers every packet on rx queue 0,
// whatever the sender's tx queue (measured on 6.18, GRO and threaded NAPI
// do not change it): only native mode spreads traffic over the queues.
//
// # Counters
//
// Stats reads the port's counters (atomics updated once per batch) and the
// kernel's XDP_STATISTICS; safe from any goroutine, also after Close. In
// copy mode the kernel counts a TxRingEmptyDescs on every poll(2), since
// poll drives transmission there: that counter is not a fault.
package xsk
