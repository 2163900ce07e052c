// Command mkdeb builds spugate's Debian package with nfpm from a tree that
// make install staged (make deb runs both):
//
//	mkdeb -root bin/deb-root -version v0.3.0-12-gabcdef0 -arch amd64 -license LICENSE -out bin/
//
// Every file of the tree goes in at its place, with its mode; those under
// /etc are conffiles (dpkg keeps an operator's changes on upgrade), LICENSE
// is the package's copyright file. It prints the .deb's path.
package main

import (
	"bytes"
	"compress/gzip"
	"embed"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// scripts are the maintainer scripts: systemd told of the units, the
// daemons stopped on removal; nothing started.
//
//go:embed scripts
var scripts embed.FS

func main() {
	root := flag.String("root", "", "the tree make install staged with PREFIX=/usr (required)")
	ver := flag.String("version", "", "the build's version, as git describe gives it (required)")
	arch := flag.String("arch", "amd64", "Debian architecture")
	license := flag.String("license", "LICENSE", "the license, installed as the copyright file")
	out := flag.String("out", ".", "directory the .deb is written to")
	flag.Parse()
	if *root == "" || *ver == "" {
		fmt.Fprintln(os.Stderr, "mkdeb: -root and -version are required")
		os.Exit(2)
	}
	path, err := build(*root, *ver, *arch, *license, *out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkdeb: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

// build writes the package and returns its path.
func build(root, ver, arch, license, out string) (string, error) {
	contents, err := tree(root)
	if err != nil {
		return "", err
	}
	contents = append(contents, &files.Content{Source: license, Destination: "/usr/share/doc/spugate/copyright",
		FileInfo: &files.ContentFileInfo{Mode: 0o644}})
	// nfpm reads scripts from files.
	dir, err := os.MkdirTemp("", "mkdeb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := gzipManPages(contents, dir); err != nil {
		return "", err
	}
	script := map[string]string{}
	for _, name := range []string{"postinst", "prerm", "postrm"} {
		b, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			return "", err
		}
		script[name] = filepath.Join(dir, name)
		if err := os.WriteFile(script[name], b, 0o755); err != nil {
			return "", err
		}
	}
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:          "spugate",
		Arch:          arch,
		Platform:      "linux",
		Version:       debVersion(ver),
		VersionSchema: "none",
		Release:       "1",
		Section:       "net",
		Priority:      "optional",
		Maintainer:    "spugate maintainers <spugate@example.org>",
		Description: "userspace IPsec VPN concentrator (AF_XDP data plane, IKEv2)\n" +
			"spud forwards ESP through AF_XDP sockets steered by an XDP program;\n" +
			"iked negotiates IKEv2 and installs the SAs into spud; spuctl drives both.",
		Homepage: "https://github.com/spugate/spugate",
		License:  "MIT",
		// Reproducible: the same tree gives the same package.
		MTime: time.Unix(0, 0).UTC(),
		Overridables: nfpm.Overridables{
			Contents: contents,
			Depends:  []string{"systemd"},
			Scripts:  nfpm.Scripts{PostInstall: script["postinst"], PreRemove: script["prerm"], PostRemove: script["postrm"]},
		},
	})
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	path := filepath.Join(out, deb.Default.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return path, f.Close()
}

// tree lists the staged files: each at its place under /, the ones under
// /etc as conffiles.
func tree(root string) (files.Contents, error) {
	var out files.Contents
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		c := &files.Content{Source: p, Destination: "/" + filepath.ToSlash(rel),
			FileInfo: &files.ContentFileInfo{Mode: fi.Mode().Perm()}}
		if strings.HasPrefix(c.Destination, "/etc/") {
			c.Type = files.TypeConfigNoReplace
		}
		out = append(out, c)
		return nil
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("%s: no files (run make install DESTDIR=%s PREFIX=/usr first)", root, root)
	}
	return out, err
}

// gzipManPages compresses the man pages, as Debian's policy has them
// (man reads either): each becomes PAGE.gz, made in dir.
func gzipManPages(contents files.Contents, dir string) error {
	for i, c := range contents {
		if !strings.HasPrefix(c.Destination, "/usr/share/man/") {
			continue
		}
		b, err := os.ReadFile(c.Source)
		if err != nil {
			return err
		}
		var z bytes.Buffer
		w, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
		if err != nil {
			return err
		}
		// No name or time in the header: the same page, the same bytes.
		if _, err := w.Write(b); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		src := filepath.Join(dir, fmt.Sprintf("man%d.gz", i))
		if err := os.WriteFile(src, z.Bytes(), 0o644); err != nil {
			return err
		}
		c.Source, c.Destination = src, c.Destination+".gz"
	}
	return nil
}

// debVersion makes git describe's output a Debian upstream version, which
// must start with a digit and sorts a later commit after its tag:
// v0.3.0-12-gabcdef0-dirty is 0.3.0+12.gabcdef0.dirty, and a describe
// without tags (abcdef0) is 0.0.0+gabcdef0.
func debVersion(v string) string {
	v = strings.TrimPrefix(v, "v")
	base, rest, _ := strings.Cut(v, "-")
	if base == "" || !unicode.IsDigit(rune(base[0])) || strings.IndexFunc(base, func(r rune) bool { return r != '.' && !unicode.IsDigit(r) }) >= 0 {
		base, rest = "0.0.0", strings.TrimSuffix("g"+base+"-"+rest, "-")
	}
	if rest == "" {
		return base
	}
	return base + "+" + strings.ReplaceAll(rest, "-", ".")
}
