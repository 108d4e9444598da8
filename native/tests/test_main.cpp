// Native test runner: `llmrl_native_tests NAME` runs one case (ctest registers each LLMRL_TEST by
// name), no argument runs all. Exit code 0 = pass. Kept dependency-free (no gtest download offline).
#include "test_util.h"

#include <cstring>
#include <iostream>

namespace llmrl::test {
std::vector<Case>& cases() {
  static std::vector<Case> c;
  return c;
}
}  // namespace llmrl::test

int main(int argc, char** argv) {
  int failed = 0, ran = 0;
  for (auto& c : llmrl::test::cases()) {
    if (argc > 1 && std::strcmp(argv[1], c.name) != 0) continue;
    ++ran;
    try {
      c.fn();
      std::cout << "[ pass ] " << c.name << "\n";
    } catch (const std::exception& e) {
      ++failed;
      std::cout << "[ FAIL ] " << c.name << ": " << e.what() << "\n";
    }
  }
  if (ran == 0) { std::cout << "no test named " << (argc > 1 ? argv[1] : "") << "\n"; return 2; }
  return failed ? 1 : 0;
}
