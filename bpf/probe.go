package bpf

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Feature is one kernel facility that spugate's programs use.
type Feature uint8

// The features Probe checks. Kernels differ in all of them: a helper can
// exist and still be refused to a program type (a hardened build refused
// bpf_xdp_adjust_meta to XDP programs while allowing the rest).
const (
	FeatureXDP                Feature = iota // program type XDP
	FeatureXDPAdjustMeta                     // helper bpf_xdp_adjust_meta, for XDP
	FeatureXDPAdjustHead                     // helper bpf_xdp_adjust_head, for XDP
	FeatureRedirectMap                       // helper bpf_redirect_map, for XDP
	FeatureXSKMap                            // map type XSKMAP
	FeatureLPMTrie                           // map type LPM_TRIE
	FeaturePerCPUArray                       // map type PERCPU_ARRAY
	FeatureSKReuseport                       // program type SK_REUSEPORT
	FeatureSelectReuseport                   // helper bpf_sk_select_reuseport, for SK_REUSEPORT
	FeatureReuseportSockArray                // map type REUSEPORT_SOCKARRAY
	FeatureLoadBytesRelative                 // helper bpf_skb_load_bytes_relative, for SK_REUSEPORT
	NumFeatures
)

var featureNames = [NumFeatures]string{
	"xdp", "xdp_adjust_meta", "xdp_adjust_head", "redirect_map", "xskmap", "lpm_trie",
	"percpu_array", "sk_reuseport", "sk_select_reuseport", "reuseport_sockarray",
	"skb_load_bytes_relative",
}

// String is the feature's name in spud's and iked's status lines and in
// Features.Map's keys ("xdp_adjust_meta"), or "feature(N)" for a value
// past NumFeatures.
func (f Feature) String() string {
	if f < NumFeatures {
		return featureNames[f]
	}
	return fmt.Sprintf("feature(%d)", uint8(f))
}

func (f Feature) probe() error {
	switch f {
	case FeatureXDP:
		return features.HaveProgramType(ebpf.XDP)
	case FeatureXDPAdjustMeta:
		return features.HaveProgramHelper(ebpf.XDP, asm.FnXdpAdjustMeta)
	case FeatureXDPAdjustHead:
		return features.HaveProgramHelper(ebpf.XDP, asm.FnXdpAdjustHead)
	case FeatureRedirectMap:
		return features.HaveProgramHelper(ebpf.XDP, asm.FnRedirectMap)
	case FeatureXSKMap:
		return features.HaveMapType(ebpf.XSKMap)
	case FeatureLPMTrie:
		return features.HaveMapType(ebpf.LPMTrie)
	case FeaturePerCPUArray:
		return features.HaveMapType(ebpf.PerCPUArray)
	case FeatureSKReuseport:
		return features.HaveProgramType(ebpf.SkReuseport)
	case FeatureSelectReuseport:
		return features.HaveProgramHelper(ebpf.SkReuseport, asm.FnSkSelectReuseport)
	case FeatureReuseportSockArray:
		return features.HaveMapType(ebpf.ReusePortSockArray)
	case FeatureLoadBytesRelative:
		return features.HaveProgramHelper(ebpf.SkReuseport, asm.FnSkbLoadBytesRelative)
	}
	return fmt.Errorf("no probe for %s", f)
}

// Features are the answers of one Probe. The zero value answers nothing:
// every feature unknown.
type Features struct {
	probed [NumFeatures]bool
	err    [NumFeatures]error
}

// ErrUnknown is Err's answer for a feature that was not probed.
var ErrUnknown = errors.New("not probed")

// Probe asks the kernel about each feature by loading a tiny program or
// creating a small map (cilium/ebpf/features, cached per process). It needs
// the privileges of loading a program (CAP_BPF, CAP_NET_ADMIN); without
// them every answer is an error that says so.
func Probe(fs ...Feature) Features {
	var r Features
	for _, f := range fs {
		r.probed[f] = true
		r.err[f] = f.probe()
	}
	return r
}

// Has reports whether the kernel has f for sure.
func (r *Features) Has(f Feature) bool { return r.probed[f] && r.err[f] == nil }

// Err says why f is missing: nil when it is there, an error wrapping
// ebpf.ErrNotSupported when the kernel refuses it, ErrUnknown when it was
// not probed, or the probe's own failure (no privilege, say).
func (r *Features) Err(f Feature) error {
	if !r.probed[f] {
		return ErrUnknown
	}
	return r.err[f]
}

// String lists the probed features on one line: "xdp=yes xdp_adjust_meta=no ...",
// "error" where the probe itself failed.
func (r Features) String() string {
	var b strings.Builder
	for f := range NumFeatures {
		if !r.probed[f] {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		v := "yes"
		switch err := r.err[f]; {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			v = "no"
		default:
			v = "error"
		}
		fmt.Fprintf(&b, "%s=%s", f, v)
	}
	return b.String()
}

// Map returns the answers by feature name, "yes", "no" or "error: ...",
// for machine-readable status.
func (r Features) Map() map[string]string {
	m := map[string]string{}
	for f := range NumFeatures {
		if !r.probed[f] {
			continue
		}
		switch err := r.err[f]; {
		case err == nil:
			m[f.String()] = "yes"
		case errors.Is(err, ebpf.ErrNotSupported):
			m[f.String()] = "no"
		default:
			m[f.String()] = "error: " + err.Error()
		}
	}
	return m
}

// KernelRelease is uname -r, for the one line that says what a daemon got.
func KernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
