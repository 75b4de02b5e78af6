package wasmcompat

import "fmt"

// remapExpr copies the instructions of r from its position until the end of the
// expression into out, with every function index (call, return_call, ref.func) mapped
// by remap. With untilEnd it stops after the `end` that closes the expression (a
// constant expression: block depth 0); otherwise it runs to the end of r's bytes (a
// function body, whose last instruction is its `end`).
//
// It decodes the instruction set the Go toolchain emits for GOOS=wasip1 (the MVP,
// sign-extension, non-trapping float-to-int, bulk memory, reference types and tail
// calls) and refuses any other opcode with its offset: a module using SIMD, atomics or
// exceptions is not one this rewrite was checked against.
func remapExpr(r *reader, out []byte, remap func(uint32) (uint32, error), untilEnd bool) ([]byte, error) {
	depth := 0
	copyFrom := r.pos
	flush := func() {
		out = append(out, r.b[copyFrom:r.pos]...)
		copyFrom = r.pos
	}
	funcIdx := func() error {
		flush()
		v, w := r.u32w()
		if r.err != nil {
			return r.err
		}
		nv, err := remap(v)
		if err != nil {
			return err
		}
		out = appendU32Width(out, nv, w)
		copyFrom = r.pos
		return nil
	}
	for {
		if r.err != nil {
			return nil, r.err
		}
		if !untilEnd && r.pos >= len(r.b) {
			break
		}
		at := r.pos
		op := r.byte()
		switch {
		case op == 0x00 || op == 0x01 || op == 0x0f || op == 0x1a || op == 0x1b || op == 0xd1:
			// unreachable, nop, return, drop, select, ref.is_null
		case op == 0x02 || op == 0x03 || op == 0x04: // block, loop, if: blocktype
			r.sleb(33)
			depth++
		case op == 0x05: // else
		case op == 0x0b: // end
			if depth == 0 && untilEnd {
				flush()
				return out, r.err
			}
			depth--
		case op == 0x0c || op == 0x0d: // br, br_if
			r.u32()
		case op == 0x0e: // br_table
			n := r.u32()
			for i := uint32(0); i <= n && r.err == nil; i++ {
				r.u32()
			}
		case op == 0x10 || op == 0x12: // call, return_call
			if err := funcIdx(); err != nil {
				return nil, fmt.Errorf("offset %d: %w", at, err)
			}
		case op == 0x11 || op == 0x13: // call_indirect, return_call_indirect: type, table
			r.u32()
			r.u32()
		case op == 0x1c: // select t*
			n := r.u32()
			r.bytes(int(n))
		case op >= 0x20 && op <= 0x26: // local.get/set/tee, global.get/set, table.get/set
			r.u32()
		case op >= 0x28 && op <= 0x3e: // loads and stores: memarg
			align := r.u32()
			if align&0x40 != 0 { // multi-memory: memory index follows
				r.u32()
			}
			r.u32()
		case op == 0x3f || op == 0x40: // memory.size, memory.grow
			r.u32()
		case op == 0x41: // i32.const
			r.sleb(32)
		case op == 0x42: // i64.const
			r.sleb(64)
		case op == 0x43: // f32.const
			r.bytes(4)
		case op == 0x44: // f64.const
			r.bytes(8)
		case op >= 0x45 && op <= 0xc4: // numeric, sign-extension: no immediates
		case op == 0xd0: // ref.null t
			r.byte()
		case op == 0xd2: // ref.func
			if err := funcIdx(); err != nil {
				return nil, fmt.Errorf("offset %d: %w", at, err)
			}
		case op == 0xfc:
			sub := r.u32()
			switch {
			case sub <= 7: // saturating truncations
			case sub == 8: // memory.init data, mem
				r.u32()
				r.u32()
			case sub == 9: // data.drop
				r.u32()
			case sub == 10: // memory.copy
				r.u32()
				r.u32()
			case sub == 11: // memory.fill
				r.u32()
			case sub == 12: // table.init elem, table
				r.u32()
				r.u32()
			case sub == 13: // elem.drop
				r.u32()
			case sub == 14: // table.copy
				r.u32()
				r.u32()
			case sub >= 15 && sub <= 17: // table.grow, table.size, table.fill
				r.u32()
			default:
				return nil, fmt.Errorf("offset %d: unsupported instruction 0xfc %d", at, sub)
			}
		default:
			return nil, fmt.Errorf("offset %d: unsupported opcode 0x%02x (not in the instruction set the Go toolchain emits)", at, op)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if depth != -1 {
		return nil, fmt.Errorf("function body does not end with its end instruction")
	}
	flush()
	return out, nil
}

// remapBody rewrites one function body (locals and code, without its size prefix).
func remapBody(body []byte, remap func(uint32) (uint32, error)) ([]byte, error) {
	r := &reader{b: body}
	groups := r.u32()
	for i := uint32(0); i < groups && r.err == nil; i++ {
		r.u32()
		r.byte()
	}
	if r.err != nil {
		return nil, fmt.Errorf("locals: %w", r.err)
	}
	out := append(make([]byte, 0, len(body)), body[:r.pos]...)
	return remapExpr(r, out, remap, false)
}
