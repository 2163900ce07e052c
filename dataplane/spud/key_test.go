package spud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The anchor key file is made whole or not at all, kept across starts,
// and a damaged one stops spud with what to do about it.
func TestAnchorKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "run", "anchor.key")
	k, err := loadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != int64(len(k)) {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("%d files beside the key, want none", len(ents)-1)
	}
	again, err := loadKey(path)
	if err != nil || again != k {
		t.Fatalf("the key did not survive a restart: %v", err)
	}
	if err := os.WriteFile(path, k[:7], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKey(path); err == nil || !strings.Contains(err.Error(), "7 bytes") || !strings.Contains(err.Error(), "remove it for a new key") {
		t.Errorf("a truncated key: %v", err)
	}
}
