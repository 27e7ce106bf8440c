# comment
namespace * x
const string GREETING = 'hi';
typedef list<Book> Shelf
enum Colour { RED = 1, GREEN, BLUE = 0x10 }
service Store {
  oneway void put(1: Shelf books, 2: map<string, Colour> tags) throws (1: Oops e),
  Book get(1: required i64 id = -1; 2: optional set<i16> s)
}
struct Book { 1: string title, 7: Book sequel }
exception Oops { 1: string why }
union U { 1: i32 a, 2: uuid u }
