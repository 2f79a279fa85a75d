/work/main/bench/store-choice/target/release/deps/store_choice-78ef1ff2e05b29e0.d: src/main.rs

/work/main/bench/store-choice/target/release/deps/store_choice-78ef1ff2e05b29e0: src/main.rs

src/main.rs:
