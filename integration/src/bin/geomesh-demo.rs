//! `make demo`: geomesh's showcase on loopback. Redis sharding over two sites (Envoy with the
//! Redis filter, two geomesh-bridges linked by gRPC, three redis-servers), scope-lang over three
//! sites (Envoys with the scope filter, agents, example services) and replication over three
//! sites (json-server behind the scope filter and the agents); scripted traffic, verified; then
//! it serves until Ctrl-C. `--check` stops after the checks (exit 0/1).
//! See `geomesh_integration::demo` and `geomesh-demo --help`.

fn main() -> std::process::ExitCode {
    geomesh_integration::demo::main()
}
