// Command minimal is the least a Go program costs to start: bench/startup.sh
// times walship's fixed cost against it and against /bin/true.
package main

import "os"

func main() { os.Stdout.WriteString("minimal\n") }
