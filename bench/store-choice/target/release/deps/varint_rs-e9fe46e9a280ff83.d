/work/main/bench/store-choice/target/release/deps/varint_rs-e9fe46e9a280ff83.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/varint-rs-2.2.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/varint-rs-2.2.1/src/zigzag.rs

/work/main/bench/store-choice/target/release/deps/libvarint_rs-e9fe46e9a280ff83.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/varint-rs-2.2.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/varint-rs-2.2.1/src/zigzag.rs

/work/main/bench/store-choice/target/release/deps/libvarint_rs-e9fe46e9a280ff83.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/varint-rs-2.2.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/varint-rs-2.2.1/src/zigzag.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/varint-rs-2.2.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/varint-rs-2.2.1/src/zigzag.rs:
