"""The first run of a real clinic (issue #29): the steps from an empty clinic to a working one,
each one's state decided from what was verified live (Asterisk's registration of the provider,
the phones' contacts), never from what was merely typed. Pure."""

from __future__ import annotations

from dataclasses import dataclass

DONE, TODO, CHECK = "done", "todo", "check"


@dataclass(frozen=True, slots=True)
class SetupFacts:
    clinic_name: str
    time_zone: str
    branches: int
    providers: int
    providers_registered: int  # registered, or answering when known by address
    numbers: int
    phones: int
    phones_online: int
    administrators: int  # active users besides the first admin who can take calls
    telephony_applied: bool | None


@dataclass(frozen=True, slots=True)
class Step:
    key: str
    title: str
    state: str  # done | todo | check (set up, but Asterisk does not confirm it works)
    detail: str
    link: str


def setup_steps(f: SetupFacts) -> list[Step]:
    def step(key: str, title: str, ok: bool, set_up: bool, detail: str, link: str) -> Step:
        return Step(key, title, DONE if ok else CHECK if set_up else TODO, detail, link)

    return [
        step("clinic", "Клиника и часовой пояс", f.clinic_name != "Клиника" and f.branches > 0, f.branches > 0,
             f"«{f.clinic_name}», {f.time_zone}; филиалов: {f.branches}. Название и пояс — в файле настроек"
             " (clinic_name, time_zone), филиалы — в «Настройки → Телефония».", "/settings#telephony"),
        step("provider", "Провайдер", f.providers_registered > 0, f.providers > 0,
             f"провайдеров: {f.providers}, на связи: {f.providers_registered}" if f.providers
             else "добавьте линию провайдера: сервер, логин и пароль", "/settings/telephony#provider"),
        step("numbers", "Номера клиники", f.numbers > 0, f.numbers > 0,
             f"номеров: {f.numbers}" if f.numbers else "добавьте номера, на которые звонят пациенты",
             "/settings/telephony#numbers"),
        step("phones", "Телефоны администраторов", f.phones_online > 0, f.phones > 0,
             f"телефонов: {f.phones}, в сети: {f.phones_online}; позвоните на каждый для проверки" if f.phones
             else "добавьте телефоны и впишите в них логин и пароль", "/settings/telephony#phones"),
        step("queues", "Очереди", f.phones_online > 0, f.phones > 0,
             "звонок на номер звонит телефонам его очереди; очереди выбираются у номера и у телефона",
             "/settings/telephony#numbers"),
        step("users", "Пользователи", f.administrators > 0, f.administrators > 0,
             f"пользователей: {f.administrators}" if f.administrators else "заведите администраторов регистратуры",
             "/settings#users"),
        step("applied", "Настройки применены", f.telephony_applied is True, f.telephony_applied is not None,
             "Asterisk подтвердил последнее изменение" if f.telephony_applied
             else "последнее изменение не применено: см. «Настройки → Телефония»"
             if f.telephony_applied is False else "Asterisk внешний: примените файлы вручную (README)",
             "/settings/telephony"),
    ]


def setup_finished(steps: list[Step]) -> bool:
    return all(s.state == DONE for s in steps)
