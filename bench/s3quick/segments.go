// Command s3quick writes N 16 MiB WAL segments of random bytes with valid
// long page headers (PostgreSQL 15), for bench/s3-quick.sh: push and fetch
// check headers, not records. Usage: go run ./bench/s3quick DIR N
package main

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

func main() {
	dir := os.Args[1]
	n, _ := strconv.Atoi(os.Args[2])
	const size = 16 << 20
	if err := os.MkdirAll(dir, 0o755); err != nil {
		panic(err)
	}
	for segno := uint64(1); segno <= uint64(n); segno++ {
		b := make([]byte, size)
		rand.NewChaCha8([32]byte{byte(segno)}).Read(b)
		clear(b[:64])
		binary.LittleEndian.PutUint16(b[0:], 0xD110)
		binary.LittleEndian.PutUint16(b[2:], 0x0002)
		binary.LittleEndian.PutUint32(b[4:], 1)
		binary.LittleEndian.PutUint64(b[8:], segno*uint64(size))
		binary.LittleEndian.PutUint64(b[24:], 7300000000000000042)
		binary.LittleEndian.PutUint32(b[32:], uint32(size))
		binary.LittleEndian.PutUint32(b[36:], 8192)
		name := fmt.Sprintf("%08X%08X%08X", 1, segno/256, segno%256)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			panic(err)
		}
	}
}
