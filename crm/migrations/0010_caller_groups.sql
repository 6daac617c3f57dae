-- Seed 001's «Группы людей»: the clinic's own caller types beside the built-in ones (Пациент.
-- Хочет записаться / Уже записан / Другой вопрос, Сотрудник, Прочие и контрагенты), each
-- saying whether its calls count in the patient statistics. Retired, not deleted: comments
-- keep the type they named.
CREATE TABLE caller_groups (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    counts_for_stats  INTEGER NOT NULL DEFAULT 0,
    active            INTEGER NOT NULL DEFAULT 1
);
