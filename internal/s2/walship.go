package s2

// ChunkCRC returns the masked CRC-32C that a chunk of the S2 (and Snappy)
// framing format carries of its uncompressed data. It is walship's
// addition to this copy: walship writes the framing itself (archive/s2.go)
// and uses only the block functions of this package.
func ChunkCRC(b []byte) uint32 { return crc(b) }
