/work/main/bench/store-choice/target/release/deps/byteview-76bf57d8f1738bf5.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/byteview.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/strview.rs

/work/main/bench/store-choice/target/release/deps/libbyteview-76bf57d8f1738bf5.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/byteview.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/strview.rs

/work/main/bench/store-choice/target/release/deps/libbyteview-76bf57d8f1738bf5.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/byteview.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/strview.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/byteview.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/byteview-0.6.1/src/strview.rs:
