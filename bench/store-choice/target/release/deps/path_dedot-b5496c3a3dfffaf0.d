/work/main/bench/store-choice/target/release/deps/path_dedot-b5496c3a3dfffaf0.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/parse_dot.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/macros.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/unix.rs

/work/main/bench/store-choice/target/release/deps/libpath_dedot-b5496c3a3dfffaf0.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/parse_dot.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/macros.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/unix.rs

/work/main/bench/store-choice/target/release/deps/libpath_dedot-b5496c3a3dfffaf0.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/parse_dot.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/macros.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/unix.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/parse_dot.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/macros.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-dedot-3.1.1/src/unix.rs:
