package main

import _ "github.com/meshplug/meshplug/filters/proxywasm"

func main() {}
