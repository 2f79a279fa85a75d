/work/main/bench/store-choice/target/release/store-choice: /work/main/bench/store-choice/src/main.rs
