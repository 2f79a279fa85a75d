/work/main/bench/store-choice/target/release/deps/path_absolutize-23115c26cd29d3ba.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/absolutize.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/macros.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/unix.rs

/work/main/bench/store-choice/target/release/deps/libpath_absolutize-23115c26cd29d3ba.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/absolutize.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/macros.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/unix.rs

/work/main/bench/store-choice/target/release/deps/libpath_absolutize-23115c26cd29d3ba.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/absolutize.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/macros.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/unix.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/absolutize.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/macros.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/path-absolutize-3.1.1/src/unix.rs:
