package steer

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/spugate/spugate/bpf"
	"github.com/spugate/spugate/dataplane/anchor"
)

// The Go mirrors of bpf/include/spugate.h are checked against the header
// itself: bpf2go emits Go types only for map keys and values, not for the
// enums and the metadata struct, which no map holds.

func readHeader(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../bpf/include/spugate.h")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// enumNames returns the enumerators of a C enum, in order, checking that
// they count up from 0.
func enumNames(t *testing.T, h, name string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?s)enum ` + name + ` \{(.*?)\};`)
	m := re.FindStringSubmatch(h)
	if m == nil {
		t.Fatalf("enum %s not in header", name)
	}
	body := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(m[1], "")
	var names []string
	for _, part := range strings.Split(body, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, v, hasV := strings.Cut(part, "=")
		n = strings.TrimSpace(n)
		if hasV {
			x, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || x != len(names) {
				t.Fatalf("enum %s: %s = %s, want %d", name, n, v, len(names))
			}
		}
		names = append(names, n)
	}
	return names
}

func define(t *testing.T, h, name string) uint64 {
	t.Helper()
	m := regexp.MustCompile(`#define ` + name + `\s+(\S+)`).FindStringSubmatch(h)
	if m == nil {
		t.Fatalf("#define %s not in header", name)
	}
	v, err := strconv.ParseUint(m[1], 0, 64)
	if err != nil {
		t.Fatalf("#define %s %s: %v", name, m[1], err)
	}
	return v
}

func TestMirrorCounters(t *testing.T) {
	names := enumNames(t, readHeader(t), "spugate_counter")
	if names[len(names)-1] != "SPUGATE_CNT_MAX" || len(names)-1 != int(NumCounters) {
		t.Fatalf("header has %d counters, Go %d", len(names)-1, NumCounters)
	}
	for i, n := range names[:len(names)-1] {
		want := strings.ToLower(strings.TrimPrefix(n, "SPUGATE_CNT_"))
		if got := Counter(i).String(); got != want {
			t.Errorf("counter %d: Go %q, header %s", i, got, n)
		}
	}
}

func TestMirrorClasses(t *testing.T) {
	names := enumNames(t, readHeader(t), "spugate_class")
	for i, n := range names {
		want := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(n, "SPUGATE_CLASS_")), "_", "-")
		if got := Class(i).String(); got != want {
			t.Errorf("class %d: Go %q, header %s", i, got, n)
		}
	}
	if len(names) != int(ClassESPFragment)+1 {
		t.Errorf("header has %d classes, Go %d", len(names), ClassESPFragment+1)
	}
}

func TestMirrorDefines(t *testing.T) {
	h := readHeader(t)
	checks := []struct {
		name string
		got  uint64
	}{
		{"SPUGATE_META_MAGIC", MetaMagic},
		{"SPUGATE_META_IPV6", uint64(FlagIPv6)},
		{"SPUGATE_META_VLAN", uint64(FlagVLAN)},
		{"SPUGATE_META_IP_OPTIONS", uint64(FlagIPOptions)},
		{"SPUGATE_META_FRAGMENT", uint64(FlagFragment)},
		{"SPUGATE_MAX_LOGICAL", anchor.MaxLogicalSPUs},
		{"SPUGATE_MAX_IFACES", MaxInterfaces},
		{"SPUGATE_MAX_QUEUES", MaxQueues},
		{"SPUGATE_CONFIG_FAIL_CLOSED", configFailClosed},
		{"SPUGATE_POLICY_BYPASS", policyBypass},
	}
	for _, c := range checks {
		if want := define(t, h, c.name); c.got != want {
			t.Errorf("%s: Go %#x, header %#x", c.name, c.got, want)
		}
	}
}

// TestMirrorMetaLayout checks Meta.Put against struct spugate_meta field by
// field: each field's offset and size from the header, C layout rules.
func TestMirrorMetaLayout(t *testing.T) {
	h := readHeader(t)
	m := regexp.MustCompile(`(?s)struct spugate_meta \{(.*?)\};`).FindStringSubmatch(h)
	if m == nil {
		t.Fatal("struct spugate_meta not in header")
	}
	body := regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(m[1], "")
	type field struct{ off, size int }
	fields := map[string]field{}
	off := 0
	for _, f := range regexp.MustCompile(`__u(8|16|32|64)\s+(\w+);`).FindAllStringSubmatch(body, -1) {
		bits, _ := strconv.Atoi(f[1])
		size := bits / 8
		off = (off + size - 1) / size * size
		fields[f[2]] = field{off, size}
		off += size
	}
	if off != MetaSize {
		t.Fatalf("struct spugate_meta is %d bytes, MetaSize %d", off, MetaSize)
	}
	// Put a distinct value in each field and find it where the header says.
	meta := Meta{LogicalSPU: 0x0102, PhysicalSPU: 0x0304, PolicyID: 0x05060708, L3Offset: 0x090a,
		L4Offset: 0x0b0c, RxQueue: 0x0d0e, Class: 0x0f, Flags: 0x10}
	b := make([]byte, MetaSize)
	meta.Put(b)
	want := map[string]uint64{"magic": MetaMagic, "logical_spu": 0x0102, "physical_spu": 0x0304,
		"policy_id": 0x05060708, "l3_offset": 0x090a, "l4_offset": 0x0b0c, "rx_queue": 0x0d0e,
		"class": 0x0f, "flags": 0x10}
	for name, v := range want {
		f, ok := fields[name]
		if !ok {
			t.Errorf("field %s not in struct spugate_meta", name)
			continue
		}
		var got uint64
		for i := f.size - 1; i >= 0; i-- {
			got = got<<8 | uint64(b[f.off+i])
		}
		if got != v {
			t.Errorf("field %s at offset %d size %d holds %#x, want %#x", name, f.off, f.size, got, v)
		}
	}
	if len(fields) != len(want) {
		t.Errorf("struct spugate_meta has %d fields, Go %d", len(fields), len(want))
	}
}

func TestMirrorGeneratedTypes(t *testing.T) {
	if s := unsafe.Sizeof(bpf.SteerSpugateConfig{}); s != 24 {
		t.Errorf("spugate_config is %d bytes, want 24", s)
	}
	if s := unsafe.Sizeof(bpf.SteerSpugatePolicy{}); s != 8 {
		t.Errorf("spugate_policy is %d bytes, want 8", s)
	}
	if s := unsafe.Sizeof(bpf.SteerSpugateSpd6SrcKey{}); s != 24 {
		t.Errorf("spugate_spd6_src_key is %d bytes, want 24", s)
	}
	if s := unsafe.Sizeof(bpf.SteerSpugateSpd4DstKey{}); s != 12 {
		t.Errorf("spugate_spd4_dst_key is %d bytes, want 12", s)
	}
	if k := lpmKey(24, 7, pfx("198.18.1.0/24").Addr()); len(k) != 12 || k[0] != 56 || k[4] != 7 || k[8] != 198 {
		t.Errorf("lpmKey = %x", k)
	}
}
