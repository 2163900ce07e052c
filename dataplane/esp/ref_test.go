package esp

import (
	"crypto/aes"
	"crypto/cipher"
	"testing"
)

func cbcDecryptRef(t *testing.T, key, iv, ct []byte) []byte {
	t.Helper()
	b, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(ct))
	cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, ct)
	return out
}
