# Writes a C++ file defining `const std::string& ${FUNC}()` that returns the text of ${IN}.
file(READ ${IN} text)
set(out "// Generated from ${IN}. Do not edit.\n#include <string>\nnamespace ${NS} {\nconst std::string& ${FUNC}() {\n  static const std::string text = R\"__embed__(${text})__embed__\";\n  return text;\n}\n}\n")
file(WRITE ${OUT}.tmp "${out}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
