package config

import (
	"fmt"
	"strings"

	"github.com/goccy/go-yaml/ast"
)

// swanctl.conf's keys that iked does not implement, decided one by one as
// an operator moving a strongSwan configuration would want: a value that
// means what iked does anyway (strongSwan's default, or "off") is
// accepted; a harmless one that iked cannot honour is ignored with a
// warning; one whose absence would change what the tunnel does (mobike,
// virtual IPs, an updown script, marks) is an error naming the key and
// what to write instead. Nothing is dropped silently. The same table
// serves iked's YAML, swanctl.conf files and VICI's load-conn, which all
// go through Parse.

// verdict is what a key's value gets.
type verdict struct {
	warn bool   // a warning rather than an error
	msg  string // "" accepts the value
}

// rule decides a key's value (lower case, trimmed).
type rule func(v string) verdict

// only accepts the values listed and refuses the others with msg.
func only(msg string, ok ...string) rule {
	return func(v string) verdict {
		for _, o := range ok {
			if v == o {
				return verdict{}
			}
		}
		return verdict{msg: msg}
	}
}

// ignored accepts the values listed and warns about the others.
func ignored(msg string, ok ...string) rule {
	return func(v string) verdict {
		for _, o := range ok {
			if v == o {
				return verdict{}
			}
		}
		return verdict{warn: true, msg: msg}
	}
}

const dataPlane = "spud is the data plane, not the kernel's XFRM"

// connRules are connections.<conn>'s.
var connRules = map[string]rule{
	"mobike":         only("mobike is not supported: set mobike = no", "no", "false", "off", "0"),
	"aggressive":     only("aggressive mode is IKEv1's; iked speaks IKEv2 only: set aggressive = no", "no", "false", "off", "0"),
	"pull":           ignored("ignored: pull is IKEv1's mode config, and iked speaks IKEv2 only"),
	"vips":           only("virtual IPs are not supported", ""),
	"pools":          only("address pools (virtual IPs) are not supported", ""),
	"dscp":           only("DSCP marking of IKE packets is not supported", "", "000000"),
	"childless":      childless,
	"ocsp":           ocsp,
	"ppk_id":         only("post-quantum preshared keys (RFC 8784) are not supported", ""),
	"ppk_required":   only("post-quantum preshared keys (RFC 8784) are not supported: set ppk_required = no", "no", "false", "off", "0"),
	"if_id_in":       only("XFRM interface IDs are not used: "+dataPlane, "", "0"),
	"if_id_out":      only("XFRM interface IDs are not used: "+dataPlane, "", "0"),
	"mediation":      only("IKE mediation is not supported: set mediation = no", "no", "false", "off", "0"),
	"mediated_by":    only("IKE mediation is not supported", ""),
	"mediation_peer": only("IKE mediation is not supported", ""),
}

func childless(v string) verdict {
	switch v {
	case "", "never":
		return verdict{}
	case "allow", "prefer":
		return verdict{warn: true, msg: fmt.Sprintf("%q ignored: iked neither initiates nor accepts childless IKE SAs (RFC 6023), as with childless = never", v)}
	}
	return verdict{msg: fmt.Sprintf("%q: childless IKE SAs (RFC 6023) are not supported: set childless = never", v)}
}

func ocsp(v string) verdict {
	switch v {
	case "", "never":
		return verdict{}
	case "reply":
		return verdict{warn: true, msg: `"reply" ignored: iked neither requests nor sends OCSP responses, as with ocsp = never`}
	}
	return verdict{msg: fmt.Sprintf("%q: OCSP is not supported (CRLs in x509crl are checked): set ocsp = never", v)}
}

// authRules are connections.<conn>.local<suffix>'s and remote<suffix>'s.
var authRules = map[string]rule{
	"round":       func(string) verdict { return verdict{} }, // one round each: its number orders nothing
	"pubkeys":     only("raw public keys are not supported: use certs and a CA in x509ca", ""),
	"eap_id":      only("EAP is not supported", ""),
	"aaa_id":      only("EAP is not supported", ""),
	"xauth_id":    only("XAuth is IKEv1's; iked speaks IKEv2 only", ""),
	"groups":      only("group memberships are not checked", ""),
	"cert_policy": only("certificate policies are not checked", ""),
	"ca_id":       only("ca_id is not supported: use cacerts", ""),
}

// childRules are connections.<conn>.children.<child>'s.
var childRules = map[string]rule{
	"ah_proposals":     only("AH is not supported: use esp_proposals", ""),
	"sha256_96":        only("truncated SHA-256 (96 bits) is not supported: set sha256_96 = no", "no", "false", "off", "0"),
	"updown":           only("iked runs no updown script", ""),
	"hostaccess":       only("hostaccess is an updown script's firewall rule, and iked runs none: set hostaccess = no", "no", "false", "off", "0"),
	"policies":         only("iked always installs the policies of its Child SAs: set policies = yes", "yes", "true", "on", "1"),
	"policies_fwd_out": only("forward policies are the kernel's: set policies_fwd_out = no", "no", "false", "off", "0"),
	"ipcomp":           only("IPComp is not supported: set ipcomp = no", "no", "false", "off", "0"),
	"inactivity":       only("inactivity timeouts are not supported", "", "0", "0s"),
	"reqid":            only("iked assigns reqids", "", "0"),
	"priority":         only("policy priorities are not configurable", "", "0"),
	"interface":        only("interface-bound policies are not supported: "+dataPlane, ""),
	"mark_in":          only("XFRM marks are not used: "+dataPlane, "", "0", "0/0", "0/0x00000000", "0/0xffffffff"),
	"mark_in_sa":       only("XFRM marks are not used: "+dataPlane, "", "no", "false", "off"),
	"mark_out":         only("XFRM marks are not used: "+dataPlane, "", "0", "0/0", "0/0x00000000", "0/0xffffffff"),
	"set_mark_in":      only("XFRM marks are not used: "+dataPlane, "", "0", "0/0", "0/0x00000000"),
	"set_mark_out":     only("XFRM marks are not used: "+dataPlane, "", "0", "0/0", "0/0x00000000"),
	"if_id_in":         only("XFRM interface IDs are not used: "+dataPlane, "", "0"),
	"if_id_out":        only("XFRM interface IDs are not used: "+dataPlane, "", "0"),
	"label":            only("security labels are not supported", ""),
	"label_mode":       only("security labels are not supported", "", "system"),
	"tfc_padding":      only("TFC padding is not supported", "", "0"),
	"hw_offload":       hwOffload,
	"copy_df":          only("spud copies the DF bit: set copy_df = yes", "yes", "true", "on", "1"),
	"copy_ecn":         only("spud copies ECN (RFC 6040 normal mode): set copy_ecn = yes", "yes", "true", "on", "1"),
	"copy_dscp":        only("spud copies DSCP outwards: set copy_dscp = out", "out"),
	"per_cpu_sas":      only("per-CPU SAs are the kernel's; spud spreads a Child SA over its SPUs itself: set per_cpu_sas = no", "no", "false", "off", "0"),
}

func hwOffload(v string) verdict {
	switch v {
	case "", "no", "false", "off", "0":
		return verdict{}
	case "auto":
		return verdict{warn: true, msg: `"auto" ignored: ` + dataPlane + ", and offloads nothing to the NIC"}
	}
	return verdict{msg: fmt.Sprintf("%q: NIC offload is not supported (%s): set hw_offload = no", v, dataPlane)}
}

// unsupported walks the connections of a YAML configuration, decides the
// keys above, and takes them out of the tree.
func (v *validator) unsupported(body ast.Node) {
	root, ok := body.(*ast.MappingNode)
	if !ok {
		return
	}
	conns := mapping(root, "connections")
	if conns == nil {
		return
	}
	for _, cv := range conns.Values {
		name := keyOf(cv)
		conn, ok := cv.Value.(*ast.MappingNode)
		if !ok {
			continue
		}
		at := []any{"connections", name}
		v.decide(conn, at, connRules)
		for _, side := range []string{"local", "remote"} {
			if a := mapping(conn, side); a != nil {
				v.decide(a, append(at[:2:2], side), authRules)
			}
		}
		if ch := mapping(conn, "children"); ch != nil {
			for _, chv := range ch.Values {
				if child, ok := chv.Value.(*ast.MappingNode); ok {
					v.decide(child, append(at[:2:2], "children", keyOf(chv)), childRules)
				}
			}
		}
	}
}

// decide applies rules to the keys of m, and removes those it decided.
func (v *validator) decide(m *ast.MappingNode, at []any, rules map[string]rule) {
	kept := m.Values[:0]
	for _, kv := range m.Values {
		key := keyOf(kv)
		r, ok := rules[key]
		if !ok {
			kept = append(kept, kv)
			continue
		}
		val := ""
		if s, err := scalar(kv.Value); err == nil {
			val = s
		} else if seq, ok := kv.Value.(*ast.SequenceNode); ok && len(seq.Values) > 0 {
			val = "list"
		}
		d := r(strings.ToLower(strings.TrimSpace(val)))
		keys := append(append([]any(nil), at...), key)
		switch {
		case d.msg == "":
		case d.warn:
			v.warnf(keys, "%s", d.msg)
		default:
			v.errf(keys, "%s", d.msg)
		}
	}
	m.Values = kept
}

// mapping returns the mapping under key in m, or nil.
func mapping(m *ast.MappingNode, key string) *ast.MappingNode {
	for _, kv := range m.Values {
		if keyOf(kv) == key {
			if mm, ok := kv.Value.(*ast.MappingNode); ok {
				return mm
			}
		}
	}
	return nil
}

func keyOf(kv *ast.MappingValueNode) string {
	if kv == nil || kv.Key == nil {
		return ""
	}
	s, _ := scalar(kv.Key)
	return s
}
