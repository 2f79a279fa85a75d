/work/main/bench/store-choice/target/release/deps/crossbeam_skiplist-583a88af4f29a931.d: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/base.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/map.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/set.rs

/work/main/bench/store-choice/target/release/deps/libcrossbeam_skiplist-583a88af4f29a931.rlib: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/base.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/map.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/set.rs

/work/main/bench/store-choice/target/release/deps/libcrossbeam_skiplist-583a88af4f29a931.rmeta: /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/lib.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/base.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/map.rs /root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/set.rs

/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/lib.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/base.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/map.rs:
/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/crossbeam-skiplist-0.1.3/src/set.rs:
